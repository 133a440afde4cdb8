import numpy as np
import pytest

import numbaconv


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_channel_shuffle_moves_channel_g_i_to_i_g(rng, layout, groups):
    x = rng.standard_normal((2, 6, 4, 5)).astype(np.float32)
    data = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    got = numbaconv.channel_shuffle(data, groups, layout=layout)
    if layout == "NHWC":
        got = got.transpose(0, 3, 1, 2)
    per_group = 6 // groups
    for g in range(groups):
        for i in range(per_group):
            np.testing.assert_array_equal(got[:, i * groups + g], x[:, g * per_group + i])
    # unbatched and a non-contiguous view give the same; the input is untouched
    np.testing.assert_array_equal(numbaconv.channel_shuffle(x[1], groups), numbaconv.channel_shuffle(x, groups)[1])
    view = np.asfortranarray(x)
    np.testing.assert_array_equal(numbaconv.channel_shuffle(view, groups), numbaconv.channel_shuffle(x, groups))


def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 12, 3, 3))
    np.testing.assert_array_equal(numbaconv.channel_shuffle(x, 3), torch.nn.ChannelShuffle(3)(torch.from_numpy(x)).numpy())


def test_bad_arguments():
    x = np.zeros((1, 6, 2, 2))
    with pytest.raises(ValueError, match="divide the channels"):
        numbaconv.channel_shuffle(x, 4)
    with pytest.raises(TypeError, match="groups must be an int"):
        numbaconv.channel_shuffle(x, 2.0)
    with pytest.raises(ValueError, match="3-D or 4-D"):
        numbaconv.channel_shuffle(np.zeros((6, 2)), 2)
