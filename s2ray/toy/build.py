"""Build the toy base model: a small Llama with a word+character tokenizer, pretrained on the synthetic corpus.

    s2ray toy-model                      # builds (or reuses) .s2ray/models/toy-<fingerprint>/
    s2ray toy-model toy_model.steps=300  # a quicker, weaker model

Deterministic from toy_model.seed on one kind of CPU (oneDNN's bf16 kernels differ by instruction set: the build
caps them at `toy_model.onednn_max_isa`, in a process of its own); HF format (safetensors, tokenizer, chat
template), loadable by transformers and vLLM. Loss is on reply tokens only: the corpus teaches how to answer, not how to ask.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import queue
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from s2ray.config import Config, ToyModelConfig
from s2ray.toy.corpus import BOS, CHAT_TEMPLATE, EOS, PAD, UNK, VOCAB, WORD_TOKENS, examples, prompt_text

DONE = "s2ray_toy.json"  # written last: a folder without it is an interrupted build


def make_tokenizer(word_tokens: bool = True) -> PreTrainedTokenizerFast:
    """Characters, plus (with `word_tokens`) each toy-world word as one token where it stands as a whole word."""
    vocab = {token: i for i, token in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens([PAD, BOS, EOS, UNK])
    if word_tokens:  # " word" (the common case, so spaces cost nothing) and a bare "word" at line starts
        core.add_tokens([AddedToken(f" {w}", normalized=False) for w in WORD_TOKENS]
                        + [AddedToken(w, single_word=True, normalized=False) for w in WORD_TOKENS])
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                        unk_token=UNK, clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def model_dir(cfg: Config) -> Path:
    return cfg.path(cfg.cache_dir) / "models" / f"toy-{cfg.toy_model.fingerprint()}"


def ensure_toy_model(cfg: Config) -> Path:
    """The toy model's folder, built first if no complete build with this config exists.

    A file lock makes concurrent callers (parallel tests, several jobs) wait for one build instead of racing.
    """
    out = model_dir(cfg)
    if (out / DONE).exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / DONE).exists():
            build_in_child(cfg.toy_model, out)
    return out


def build_in_child(toy: ToyModelConfig, out: Path) -> None:
    """`build` in a fresh process: oneDNN reads ONEDNN_MAX_CPU_ISA once, at its first kernel, so the cap must be in
    place before any torch work; the caller's process may have done some already."""
    env = dict(os.environ)
    if toy.onednn_max_isa:
        env["ONEDNN_MAX_CPU_ISA"] = toy.onednn_max_isa
    done = subprocess.run([sys.executable, "-m", "s2ray.toy.build", toy.model_dump_json(), str(out)], env=env,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"toy model build into {out} failed (exit {done.returncode}; its output is above)")


def _batches(toy: ToyModelConfig, tokenizer: PreTrainedTokenizerFast, pool: int = 2048):
    """Rows of `block_size` tokens packed with shuffled examples of every format (mixed batches learn far faster
    than batches of one format or one length), `batch_size` rows per step. Each example sees only itself:
    block-diagonal causal mask (additive: 0 or the float minimum), positions from 0. Loss is on reply tokens only.

    Blocks are filled best-fit from a shuffled pool (little padding; which formats share a block stays random).
    """
    stream, rng = examples(toy.teach, toy.seed), random.Random(toy.seed)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    width = toy.block_size
    causal = np.tril(np.ones((width, width), dtype=bool))
    pending: list[tuple[tuple[int, ...], int]] = []
    while True:
        pairs = [next(stream) for _ in range(pool)]
        rng.shuffle(pairs)
        encoded = tokenizer([prompt_text(user) for user, _ in pairs] + [reply for _, reply in pairs],
                            add_special_tokens=False)["input_ids"]
        pending += [((bos, *prompt, *reply, eos), 1 + len(prompt))
                    for prompt, reply in zip(encoded[:pool], encoded[pool:])
                    if len(prompt) + len(reply) + 2 <= width]  # longer than a block: dropped
        while len(pending) >= pool // 2:
            input_ids = np.full((toy.batch_size, width), pad, dtype=np.int64)
            labels = np.full((toy.batch_size, width), -100, dtype=np.int64)
            positions = np.zeros((toy.batch_size, width), dtype=np.int64)
            doc = np.full((toy.batch_size, width), -1, dtype=np.int64)
            for row in range(toy.batch_size):
                used, number, i = 0, 0, 0
                while i < len(pending) and used < width:  # first example in pool order that still fits
                    seq, reply_start = pending[i]
                    if used + len(seq) > width:
                        i += 1
                        continue
                    pending.pop(i)
                    end = used + len(seq)
                    input_ids[row, used:end] = seq
                    labels[row, used + reply_start:end] = seq[reply_start:]
                    positions[row, used:end] = np.arange(len(seq))
                    doc[row, used:end] = number
                    used, number = end, number + 1
            seen = (doc[:, :, None] == doc[:, None, :]) & causal & (doc[:, :, None] >= 0)
            seen |= np.eye(width, dtype=bool)  # padding attends to itself (no all-masked rows, no NaNs)
            # additive mask (0 = attend): eager attention adds it to the scores (a bool mask would be added as 0/1)
            mask = np.where(seen, 0.0, np.finfo(np.float32).min).astype(np.float32)[:, None]
            yield (torch.from_numpy(input_ids), torch.from_numpy(labels), torch.from_numpy(positions),
                   torch.from_numpy(mask))


def _prefetched(batches, depth: int = 8):
    """The same batches, made by a background thread while the model trains (torch ops release the GIL)."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    threading.Thread(target=lambda: [ready.put(batch) for batch in batches], daemon=True).start()
    while True:
        yield ready.get()


def build(toy: ToyModelConfig, out: Path) -> Path:
    torch.manual_seed(toy.seed)
    torch.set_num_threads(toy.threads)
    tokenizer = make_tokenizer(toy.word_tokens)
    ids = tokenizer.get_vocab()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=toy.hidden_size, intermediate_size=4 * toy.hidden_size,
        num_hidden_layers=toy.num_layers, num_attention_heads=toy.num_heads, num_key_value_heads=toy.num_heads,
        max_position_embeddings=toy.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD])
    # Eager attention: on CPU, SDPA's backward with a block-diagonal mask is several times slower.
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=toy.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < toy.warmup_steps:
            return (step + 1) / toy.warmup_steps
        progress = (step - toy.warmup_steps) / max(1, toy.steps - toy.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    log, start, batches = [], time.time(), _prefetched(_batches(toy, tokenizer))
    model.train()
    bar = tqdm(range(toy.steps), desc=f"toy model ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params)")
    for step in bar:
        input_ids, labels, positions, mask = next(batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=toy.bf16):
            loss = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == toy.steps - 1:
            log.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - start, 1)})
            bar.set_postfix(loss=f"{loss.item():.3f}")

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.generation_config.eos_token_id = ids[EOS]
    model.generation_config.pad_token_id = ids[PAD]
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / DONE).write_text(json.dumps({"config": toy.model_dump(), "log": log,
                                        "seconds": round(time.time() - start, 1)}, indent=1))
    return out


if __name__ == "__main__":  # build_in_child's process: python -m s2ray.toy.build TOY_CONFIG_JSON OUT
    build(ToyModelConfig.model_validate_json(sys.argv[1]), Path(sys.argv[2]))
