"""acr.synth.composition: songs are deterministic per seed, vary in tempo, key and mode, extend
when longer, and repeat their sections' notes."""

import numpy as np

from acr import synth


def test_different_seeds_give_different_songs_and_audio() -> None:
    first, second = synth.compose_song(1, 10.0), synth.compose_song(2, 10.0)
    assert first != second
    assert first.lead != second.lead
    audio = [synth.synthesize_track(seed, duration_s=5.0) for seed in (1, 2)]
    assert np.abs(np.corrcoef(audio[0], audio[1])[0, 1]) < 0.2


def test_longer_song_extends_shorter_one() -> None:
    short, long = synth.compose_song(5, 10.0), synth.compose_song(5, 40.0)
    prefix = [note for note in long.lead if note.start_s < 10.0]
    assert [(note.start_s, note.pitch_midi) for note in short.lead] == [
        (note.start_s, note.pitch_midi) for note in prefix
    ]
    assert short.drums == tuple(hit for hit in long.drums if hit.start_s < 10.0)


def test_recurring_sections_repeat_their_notes() -> None:
    song = synth.compose_song(8, duration_s=90.0)
    choruses = [section for section in song.sections if section.label == "chorus"]
    assert len(choruses) >= 2

    def relative_notes(section: synth.Section) -> list[tuple[float, int]]:
        end_s = section.start_s + section.duration_s
        return [
            (round(note.start_s - section.start_s, 6), note.pitch_midi)
            for note in song.lead + song.bass
            if section.start_s <= note.start_s < end_s
        ]

    assert relative_notes(choruses[0]) == relative_notes(choruses[1])
    assert len({section.label for section in song.sections}) >= 2


def test_songs_vary_in_tempo_key_and_mode() -> None:
    songs = [synth.compose_song(seed, duration_s=10.0) for seed in range(10)]
    assert len({song.tempo_bpm for song in songs}) >= 8
    assert len({song.key_root_midi % 12 for song in songs}) >= 4
    assert len({song.mode for song in songs}) >= 2
    assert all(70 <= song.tempo_bpm <= 170 for song in songs)
