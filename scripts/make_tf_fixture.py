"""Write tests/fixtures/tf_gpt2_tiny: a tiny GPT-2 checkpoint saved by real TensorFlow.

The test suite reads this folder with gpt-tui's own TensorFlow-free reader,
so the reader is checked against bytes TensorFlow wrote, not against a writer
of ours. Run it once, in a throwaway environment, and commit the output:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu numpy
    /tmp/tfvenv/bin/python scripts/make_tf_fixture.py

The variables carry the names and shapes of OpenAI's original release
(model/wte, model/h0/attn/c_attn/w of shape [1, nx, 3nx], ...), saved with the
TF1 ``Saver`` in its V2 format: checkpoint, model.ckpt.index,
model.ckpt.data-00000-of-00001, model.ckpt.meta, plus hparams.json.
The vocabulary is GPT-2's full 50257 tokens; a width of 8 keeps the token
table (the largest tensor) near 1.6 MB. encoder.json and vocab.bpe are left
out: gpt-tui's tokenizer ships with the package, and the loader does not read them.

The same values are also written, straight from the numpy arrays, as a
Hugging Face folder (tests/fixtures/tf_gpt2_tiny_hf: model.safetensors in
GPT2LMHeadModel's naming plus config.json), so a test can check that both
routes give the same model. That needs ``pip install safetensors`` too.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

README = """\
A two-layer GPT-2 (width 8, 2 heads, context 32, GPT-2's 50257-token
vocabulary) saved by real TensorFlow 2.21 with `tf.compat.v1.train.Saver`,
under the variable names of OpenAI's original release. Written by
`scripts/make_tf_fixture.py`; `../tf_gpt2_tiny_hf` holds the same values in
Hugging Face's layout, written straight from the numpy arrays.

OpenAI's `encoder.json` and `vocab.bpe` are left out: gpt-tui's tokenizer
ships with the package and the loader never reads them.
"""
HPARAMS = {"n_vocab": 50257, "n_ctx": 32, "n_embd": 8, "n_head": 2, "n_layer": 2}
SEED = 20240611


def gpt2_variables(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """OpenAI's variable names and shapes, filled with random values (nonzero biases and gains)."""
    d, vocab, ctx = HPARAMS["n_embd"], HPARAMS["n_vocab"], HPARAMS["n_ctx"]

    def normal(*shape: int, std: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    variables = {"model/wte": normal(vocab, d), "model/wpe": normal(ctx, d)}
    for layer in range(HPARAMS["n_layer"]):
        p = f"model/h{layer}"
        variables[f"{p}/ln_1/g"] = 1.0 + normal(d)
        variables[f"{p}/ln_1/b"] = normal(d)
        variables[f"{p}/attn/c_attn/w"] = normal(1, d, 3 * d)
        variables[f"{p}/attn/c_attn/b"] = normal(3 * d)
        variables[f"{p}/attn/c_proj/w"] = normal(1, d, d)
        variables[f"{p}/attn/c_proj/b"] = normal(d)
        variables[f"{p}/ln_2/g"] = 1.0 + normal(d)
        variables[f"{p}/ln_2/b"] = normal(d)
        variables[f"{p}/mlp/c_fc/w"] = normal(1, d, 4 * d)
        variables[f"{p}/mlp/c_fc/b"] = normal(4 * d)
        variables[f"{p}/mlp/c_proj/w"] = normal(1, 4 * d, d)
        variables[f"{p}/mlp/c_proj/b"] = normal(d)
    variables["model/ln_f/g"] = 1.0 + normal(d)
    variables["model/ln_f/b"] = normal(d)
    return variables


def write_hf_copy(values: dict[str, np.ndarray], out_dir: Path) -> None:
    """The same weights in Hugging Face's layout: Conv1D keeps TF's [nx, nf] orientation, minus the leading 1."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for name, value in values.items():
        key = name.removeprefix("model/")
        key = key.replace("/g", ".weight").replace("/b", ".bias").replace("/w", ".weight")
        key = key.replace("/", ".")
        if key.startswith("h") and key[1].isdigit():
            layer, rest = key[1:].split(".", 1)
            key = f"h.{layer}.{rest}"
        if key in ("wte", "wpe"):
            key += ".weight"
        tensors["transformer." + key] = np.ascontiguousarray(value[0] if value.ndim == 3 else value)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": HPARAMS["n_vocab"],
        "n_positions": HPARAMS["n_ctx"],
        "n_embd": HPARAMS["n_embd"],
        "n_layer": HPARAMS["n_layer"],
        "n_head": HPARAMS["n_head"],
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main(out_dir: Path) -> None:
    import tensorflow as tf

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    values = gpt2_variables(np.random.default_rng(SEED))

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    graph = tf1.Graph()
    with graph.as_default():
        # Zero initializers and values fed at run time keep the weights out of the .meta graph.
        variables = {
            name: tf1.get_variable(name, shape=value.shape, dtype=tf.float32, initializer=tf1.zeros_initializer())
            for name, value in values.items()
        }
        feeds = {name: tf1.placeholder(tf.float32, shape=value.shape) for name, value in values.items()}
        assign_all = tf.group(*(variables[name].assign(feeds[name]) for name in values))
        saver = tf1.train.Saver(var_list=list(variables.values()))
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            session.run(assign_all, feed_dict={feeds[name]: value for name, value in values.items()})
            saver.save(session, str(out_dir / "model.ckpt"))
    (out_dir / "hparams.json").write_text(json.dumps(HPARAMS, indent=2) + "\n")
    (out_dir / "README.md").write_text(README)

    # The checkpoint file names the prefix as written; keep it relative like OpenAI's release.
    (out_dir / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n'
    )
    hf_dir = out_dir.with_name(out_dir.name + "_hf")
    write_hf_copy(values, hf_dir)
    for path in sorted([*out_dir.iterdir(), *hf_dir.iterdir()]):
        print(f"{path.stat().st_size:>10}  {path}")


if __name__ == "__main__":
    default = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tf_gpt2_tiny"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
