"""Prompt schedules (`lc4.prompts`): parsing time ranges, their errors, and the over-long prompt report."""

from __future__ import annotations

import random

import pytest
import torch

from lc4.prompts import parse_prompt_schedule, prompt_text, truncated_words


@pytest.fixture(scope="module")
def tokenizer():
    from lc4.models.tokenizer import load_clip_tokenizer

    return load_clip_tokenizer()


def test_single_prompt_covers_every_frame():
    s = parse_prompt_schedule("  a girl in a red coat ", 13)
    assert s.prompts == ("a girl in a red coat",)
    assert s.num_frames == 13 and torch.equal(s.frame_prompt, torch.zeros(13, dtype=torch.long))


def test_ranges_open_end_and_shared_text():
    s = parse_prompt_schedule(["0-4: a red car", "5 - 9 : a blue car", "10-: a red car"], 14)
    assert s.prompts == ("a red car", "a blue car")
    expected = [0] * 5 + [1] * 5 + [0] * 4
    assert s.frame_prompt.tolist() == expected


def test_random_partitions_parse_to_their_owner():
    """Any shuffled partition of [0, T) into ranges gives each frame its own range's text."""
    rng = random.Random(0)
    for _ in range(50):
        t = rng.randint(1, 60)
        cuts = sorted(rng.sample(range(1, t), rng.randint(0, min(5, t - 1)))) if t > 1 else []
        bounds = list(zip([0, *cuts], [*cuts, t]))
        entries = [f"{a}-{b - 1}: text {i}" for i, (a, b) in enumerate(bounds)]
        if rng.random() < 0.5:  # open last range
            a, _ = bounds[-1]
            entries[-1] = f"{a}-: text {len(bounds) - 1}"
        rng.shuffle(entries)
        s = parse_prompt_schedule(entries if len(entries) > 1 or rng.random() < 0.5 else entries[0], t)
        for i, (a, b) in enumerate(bounds):
            owner = s.frame_prompt[a:b]
            assert all(s.prompts[j] == f"text {i}" for j in owner.tolist())


@pytest.mark.parametrize(
    "prompt, frames, message",
    [
        ("", 10, "the prompt is empty"),
        ("   ", 10, "the prompt is empty"),
        ([], 10, "no prompt given"),
        (["0-4: a", "3-9: b"], 10, "3-9 overlaps"),
        (["0-3: a", "6-9: b"], 10, "frames 4-5 have no prompt"),
        (["0-1: a", "3-4: b", "6-7: c"], 10, "frames 2, 5, 8-9 have no prompt"),
        (["0-4: a", "a blue car"], 10, "has no frame range"),
        (["0-4: a", "5-: "], 10, "frames 5-9 is empty"),
        (["0-4: a", "12-20: b"], 10, "outside the video's 10 frames"),
        (["0-4: a", "7-5: b"], 10, "7-5 is empty"),
        ("a red car", 0, "num_frames must be an integer >= 1"),
    ],
)
def test_bad_schedules_raise_one_clear_error(prompt, frames, message):
    with pytest.raises(ValueError) as e:
        parse_prompt_schedule(prompt, frames)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_prompt_text_strips_the_range():
    assert prompt_text("10-20: a red car") == "a red car"
    assert prompt_text("121-:  sunset ") == "sunset"
    assert prompt_text("1920s film: a red car") == "1920s film: a red car"


def test_truncated_words_is_empty_when_the_prompt_fits(tokenizer):
    assert truncated_words(tokenizer, "a girl in a red coat") == ""
    fits = " ".join(["red"] * 75)  # 75 text tokens + start + end = 77
    assert len(tokenizer(fits).input_ids) == 77
    assert truncated_words(tokenizer, fits) == ""
    assert truncated_words(tokenizer, fits + " blue") == "blue"


def test_truncated_words_reports_the_cut_verbatim(tokenizer):
    prompt = "A girl, in a red-coat (bright!) walks; " * 8 + "The END words here"
    cut = truncated_words(tokenizer, prompt)
    assert cut and prompt.endswith(cut) and cut.endswith("The END words here")
    kept = prompt[: len(prompt) - len(cut)]
    # what is kept fills the window; one more word of the cut would not fit
    assert len(tokenizer(kept).input_ids) <= tokenizer.model_max_length
    assert len(tokenizer(kept + cut.split()[0]).input_ids) > tokenizer.model_max_length


def test_truncated_words_without_offsets_decodes_the_tail(tokenizer):
    class NoOffsets:
        model_max_length = tokenizer.model_max_length

        def __call__(self, text, **kw):
            if kw.get("return_offsets_mapping"):
                raise NotImplementedError
            return tokenizer(text, **kw)

        def decode(self, ids, **kw):
            return tokenizer.decode(ids, **kw)

    prompt = " ".join(["red"] * 80) + " zebra"
    assert truncated_words(NoOffsets(), prompt) == "red red red red red zebra"
