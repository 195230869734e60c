"""Runs: sweeps over seeds and settings, their statistics, reports and plots."""
