"""Expert-parallel MoE on CPU processes (gloo), small shapes, the float32 reference standing in
for the kernels; checked against the float64 oracle over all experts."""
import json
import subprocess
import sys

import pytest
import torch.distributed as dist

from fibkit.parallel import ep_check
from fibkit.parallel.expert_parallel import ep_moe
from fibkit.testing import moe_expert_weights, moe_token_inputs


def test_two_ranks_match_the_single_process_oracle(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "-m", "fibkit.parallel.ep_check", "--cpu", "--world", "2",
                           "--tokens", "1", "9", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["tokens"] for r in rows] == [1, 9]
    for r in rows:
        assert r["passed"] and r["matched_ratio"] == 1.0
        assert r["max_abs_oracle"] > 1.0  # outputs O(1): the tolerance is not met trivially
        assert r["max_error_of_max"] < 1e-2  # bf16 rounding of the partials and the sum
        assert r["decomposed_vs_single_oracle"] < 1e-9


@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"file://{tmp_path / 'rdzv'}")
    yield
    dist.destroy_process_group()


def test_a_wrong_expert_offset_is_caught(one_rank_group):
    def shifted(*args):  # the single-rank MoE with its expert offset off by one
        return ep_check.reference_moe(*args[:8], args[8] + 1, args[9])

    rows = ep_check.check_and_time(0, 1, "cpu", ep_check.SMALL, [16], shifted, 0, per_call=16)
    assert not rows[0]["passed"] and rows[0]["max_error_of_max"] > 0.1


def test_rank_count_must_cover_the_experts(one_rank_group):
    inputs = moe_token_inputs(2, 32, 256, 0, "cpu")
    weights = moe_expert_weights(range(16), 256, 128, 0, "cpu")  # half the experts
    with pytest.raises(ValueError, match="1 ranks x 16 local experts != 32"):
        ep_moe(*inputs, *weights, 2.5, moe_fn=ep_check.reference_moe, experts_per_call=16)
