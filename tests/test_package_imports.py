"""`import keras_attn`: plot and interpret reachable, matplotlib optional."""

import os
import subprocess
import sys

import keras


def _run(code):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "KERAS_BACKEND": keras.backend.backend(),
        },
        check=False,
    )


def test_keras_attn_works_without_matplotlib():
    # Keras itself imports matplotlib when it is installed, so the check is
    # run with matplotlib made unimportable (None in sys.modules).
    result = _run(
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "import numpy as np\n"
        "import keras_attn\n"
        "assert 'keras_attn.plot' not in sys.modules\n"
        "assert 'keras_attn.interpret' not in sys.modules\n"
        "assert {'plot', 'interpret'} <= set(dir(keras_attn))\n"
        "w = np.full((1, 1, 5, 5), 0.2)\n"
        "print(keras_attn.interpret.attention_rollout([w]).shape)\n"
        "try:\n"
        "    keras_attn.plot.plot_attention(np.ones((2, 3)), 'abc', 'ab')\n"
        "except ImportError as e:\n"
        "    assert 'pip install keras-attn[plot]' in str(e), e\n"
        "    print('ok')\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["(1,", "2,", "2)", "ok"]


def test_plot_is_reachable_from_the_package():
    import keras_attn

    assert keras_attn.plot.plot_attention.__module__ == "keras_attn.plot"
    assert keras_attn.interpret.attention_rollout.__name__ == (
        "attention_rollout"
    )


def test_unknown_attribute_raises_attribute_error():
    import keras_attn

    try:
        keras_attn.no_such_module  # noqa: B018
    except AttributeError as e:
        assert "no_such_module" in str(e)
    else:
        raise AssertionError("no AttributeError")
