"""Build a tiny Llama model directory that vLLM serves with ``--load-format dummy`` (random weights, no download).

The directory holds ``config.json`` (2 layers, hidden 256, 4 heads), a byte-level BPE ``tokenizer.json`` trained
here from a fixed corpus with the ``tokenizers`` library, and ``tokenizer_config.json``. Everything is
deterministic: the same files byte for byte on every run, so a test's prompt token counts never drift.

Run with an interpreter that has ``tokenizers`` (the vLLM venv does): ``python tiny_model.py DIR``.
This file imports nothing from the project so it can run from any venv by path.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

VOCAB_SIZE = 512  # byte alphabet (256) + 3 specials + merges; config.json's vocab_size matches
MAX_POSITIONS = 512
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2, as config.json's bos/eos ids say

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": MAX_POSITIONS,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

TOKENIZER_CONFIG = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "model_max_length": MAX_POSITIONS,
    "clean_up_tokenization_spaces": False,
}

_WORDS = (  # noqa: SIM905 (one string reads better than a hundred quoted words)
    "the of and to in is for on that with as it at by from this be or are an was not but all can had her one "
    "our out day get has him his how man new now old see two way who boy did its let put say she too use time "
    "year people good first last long great little own other right big high small large next early young few "
    "public bad same able water light place world house point school work energy power token model server"
).split()


def corpus(n_lines: int = 2000, seed: int = 0) -> list[str]:
    """A fixed pseudo-random English-like corpus (seeded, so training sees the same text every run)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=12)) + f" {i}." for i in range(n_lines)]


def train_tokenizer_json() -> str:
    """Train the byte-level BPE tokenizer and return its JSON text."""
    # Training threads could in principle reorder equal-count merges; one thread keeps it reproducible.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no <unk> in prompts
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    if tok.get_vocab_size() > VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {tok.get_vocab_size()} tokens, config allows {VOCAB_SIZE}")
    return tok.to_str(pretty=True)


def build_tiny_model(directory: str | Path) -> Path:
    """Write the model files into ``directory`` (created if needed) and return it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2, sort_keys=True) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2, sort_keys=True) + "\n")
    (out / "tokenizer.json").write_text(train_tokenizer_json() + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tiny_model.py DIR")
    print(build_tiny_model(sys.argv[1]))
