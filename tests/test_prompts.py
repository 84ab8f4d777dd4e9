import pytest

from playground.data import Record
from playground.errors import PlaygroundError
from playground.prompts import render

WITH_INPUT = Record("Rewrite the sentence in passive voice.", "The cat chased the mouse.",
                    "The mouse was chased by the cat.")
NO_INPUT = Record("What is the capital of France?", "", "Paris")


class FakeEos:
    eos_token = "<|endoftext|>"
    bos_token = None
    chat_template = None


def test_alpaca_with_input_exact():
    rendered = render(WITH_INPUT, "alpaca", FakeEos())
    assert rendered.training_text == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n"
        "### Instruction:\nRewrite the sentence in passive voice.\n\n"
        "### Input:\nThe cat chased the mouse.\n\n"
        "### Response:\nThe mouse was chased by the cat.<|endoftext|>")
    assert rendered.prompt.endswith("### Response:\n")
    assert rendered.response == "The mouse was chased by the cat."


def test_alpaca_without_input_has_no_input_section():
    rendered = render(NO_INPUT, "alpaca", FakeEos())
    assert rendered.prompt == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nWhat is the capital of France?\n\n### Response:\n")
    assert "### Input" not in rendered.training_text


def test_phi3_exact():
    assert render(WITH_INPUT, "phi3", FakeEos()).training_text == (
        "<|user|>\nRewrite the sentence in passive voice.\nThe cat chased the mouse.\n"
        "<|assistant|>:\nThe mouse was chased by the cat.<|endoftext|>")
    assert render(NO_INPUT, "phi3", FakeEos()).prompt == "<|user|>\nWhat is the capital of France?\n<|assistant|>:\n"


def test_custom_template():
    rendered = render(WITH_INPUT, "custom", FakeEos(), "Q: {instruction} [{input}]\nA: {output} (end)")
    assert rendered.prompt == "Q: Rewrite the sentence in passive voice. [The cat chased the mouse.]\nA: "
    assert rendered.response == "The mouse was chased by the cat. (end)"


@pytest.mark.parametrize("template, problem", [
    ("{instruction} and nothing else", "{output} exactly once"),
    ("{output} {instruction}", "must come after"),
    ("{instruction} {output} {output}", "{output} exactly once"),
    ("{instruction} {bogus}", "unknown placeholder {bogus} (use {instruction}, {input}, {output})"),
])
def test_custom_template_errors(template, problem):
    with pytest.raises(PlaygroundError, match="Custom template") as info:
        render(NO_INPUT, "custom", FakeEos(), template)
    assert problem in str(info.value)


def test_chat_needs_a_template():
    with pytest.raises(PlaygroundError, match="no chat template"):
        render(NO_INPUT, "chat", FakeEos())


def test_default_tokenizer_chat_template(default_tokenizer):
    rendered = render(WITH_INPUT, "chat", default_tokenizer)
    assert rendered.prompt == ("<bos><start_of_turn>user\nRewrite the sentence in passive voice.\n\n"
                               "The cat chased the mouse.<end_of_turn>\n<start_of_turn>model\n")
    assert rendered.response == "The mouse was chased by the cat.<end_of_turn>\n"
    assert rendered.eos == "<eos>" and rendered.has_special_tokens


def test_unknown_style():
    with pytest.raises(PlaygroundError, match="Unknown prompt style"):
        render(NO_INPUT, "llama2", FakeEos())
