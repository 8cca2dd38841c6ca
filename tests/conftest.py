import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


import pytest  # noqa: E402


@pytest.fixture
def one_thread():
    """One torch intra-op thread: on a shared 2-core machine, more threads mostly spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def state_at_interrupt(run, interrupt_at: int):
    """Run `run(callback=...)`, interrupted (KeyboardInterrupt) after step `interrupt_at`; returns the
    (next step, latents) that a per-step saver would have kept: what `resume_latents` takes."""
    saved = {}

    def stop(i, t, z):
        saved["state"] = (i + 1, z.clone())
        if i == interrupt_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(callback=stop)
    assert saved["state"][0] == interrupt_at + 1
    return saved["state"]
