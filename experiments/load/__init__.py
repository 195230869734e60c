"""The pieces of experiments/load_test.py, the load and fault test of `acr serve`, one module
per concept: the client, the uploads, the server, the measurements, the faults, the results."""
