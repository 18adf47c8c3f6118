"""attention_rollout on the all-zero rows of fully masked queries."""

import numpy as np

from keras_attn.interpret import attention_rollout


def test_rollout_without_residual_keeps_zero_rows_finite():
    # Tokens [CLS, patch 0, patch 1]; one head. Example 0: patch 0 is a
    # fully masked query (its row of weights is 0). Example 1: the class
    # token itself is fully masked in the last layer.
    rows = np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    cls_masked = np.array([[0.0, 0.0, 0.0], [0.2, 0.4, 0.4], [0.0, 0.5, 0.5]])
    layer1 = np.stack([rows, rows])[:, None]  # (B=2, N=1, 3, 3)
    layer2 = np.stack([rows, cls_masked])[:, None]
    with np.errstate(all="raise"):
        result = attention_rollout(
            [layer1, layer2], grid_size=2, add_residual=False
        )
    # Example 0 by hand: CLS row of A2 @ A1 =
    # 0.5 * [0.5, .25, .25] + 0.25 * [0, 0, 0] + 0.25 * [0, .5, .5]
    # = [0.25, 0.25, 0.25]; patches [0.25, 0.25] renormalized.
    np.testing.assert_allclose(result[0], [0.5, 0.5])
    # Example 1: nothing flows into the class token: zeros, not NaN.
    np.testing.assert_array_equal(result[1], [0.0, 0.0])


def test_rollout_mean_rows_with_a_masked_query():
    rows = np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    scores = rows[None, None]  # (1, 1, 3, 3)
    result = attention_rollout(
        [scores], grid_size=3, class_token=False, add_residual=False
    )
    # Mean row: [0.5, 0.75, 0.75] / 3, renormalized to sum to 1.
    np.testing.assert_allclose(result[0], np.array([0.5, 0.75, 0.75]) / 2.0)
