"""VLLMEngine.prompt_ids: its fast-tokenizer path gives transformers' own chat-template token ids."""

import pytest

from s2ray.engine import VLLMEngine


@pytest.fixture(scope="module")
def engine():
    from s2ray.toy.build import make_tokenizer

    engine = object.__new__(VLLMEngine)  # the tokenizer part only: no vLLM engine is started
    engine.tokenizer = make_tokenizer()
    assert engine.tokenizer.is_fast
    return engine


@pytest.mark.parametrize("prompt", ["last letters: apple river stone", "", "  two  spaces\nand a newline ",
                                    "unknown wörds ünïcode 123+45", "Q: A: </s> <s> tokens in text"])
def test_fast_path_matches_transformers(engine, prompt):
    ids = engine.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True,
                                               add_generation_prompt=True)
    assert engine.prompt_ids(prompt) == list(ids["input_ids"])
