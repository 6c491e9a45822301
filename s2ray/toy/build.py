"""Build the toy base model: a small Llama with a character tokenizer, pretrained on the synthetic corpus.

    s2ray toy-model                      # builds (or reuses) .s2ray/models/toy-<fingerprint>/
    s2ray toy-model toy_model.steps=300  # a quicker, weaker model

Deterministic from toy_model.seed; HF format (safetensors, tokenizer, chat template), loadable by transformers
and vLLM. Loss is on reply tokens only: the corpus teaches how to answer, not how to ask.
"""

from __future__ import annotations

import fcntl
import json
import math
import random
import shutil
import time
from pathlib import Path

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
            build(cfg.toy_model, out)
    return out


def _encode(user: str, reply: str, tokenizer: PreTrainedTokenizerFast) -> tuple[list[int], int]:
    """Token ids of one example in the chat format, and where the reply starts (the loss covers only the reply)."""
    prompt, answer = tokenizer([prompt_text(user), reply], add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id] + prompt + answer + [tokenizer.eos_token_id], 1 + len(prompt)


def _batches(toy: ToyModelConfig, tokenizer: PreTrainedTokenizerFast):
    """Blocks of `block_size` tokens packed with shuffled examples of every format (mixed batches learn far faster
    than batches of one format). Each example sees only itself: block-diagonal causal mask, positions from 0."""
    stream, rng = examples(toy.teach, toy.seed), random.Random(toy.seed)
    buffer: list[tuple[list[int], int]] = []
    pad = tokenizer.pad_token_id
    while True:
        while len(buffer) < 32 * toy.batch_size:
            buffer.append(_encode(*next(stream), tokenizer))
        rng.shuffle(buffer)
        input_ids = torch.full((toy.batch_size, toy.block_size), pad)
        labels = torch.full((toy.batch_size, toy.block_size), -100)
        positions = torch.zeros((toy.batch_size, toy.block_size), dtype=torch.long)
        doc = torch.full((toy.batch_size, toy.block_size), -1)
        for row in range(toy.batch_size):
            used, number = 0, 0
            while buffer and used + len(buffer[-1][0]) <= toy.block_size:
                seq, prompt_len = buffer.pop()
                end = used + len(seq)
                input_ids[row, used:end] = torch.tensor(seq)
                labels[row, used + prompt_len:end] = torch.tensor(seq[prompt_len:])
                positions[row, used:end] = torch.arange(len(seq))
                doc[row, used:end] = number
                used, number = end, number + 1
            if used == 0:  # an example longer than a block: drop it
                buffer.pop()
        causal = torch.tril(torch.ones(toy.block_size, toy.block_size, dtype=torch.bool))
        mask = (doc[:, :, None] == doc[:, None, :]) & causal & (doc[:, :, None] >= 0)
        mask |= torch.eye(toy.block_size, dtype=torch.bool)  # padding rows attend to themselves (no NaNs)
        yield input_ids, labels, positions, mask[:, None]


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
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=toy.learning_rate, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < toy.warmup_steps:
            return (step + 1) / toy.warmup_steps
        progress = (step - toy.warmup_steps) / max(1, toy.steps - toy.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    log, start, batches = [], time.time(), _batches(toy, tokenizer)
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
