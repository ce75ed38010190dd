"""Prompt text to tokens for the server: a cheap bound that refuses a prompt too long for the
context before tokenizing it, and chat prompts in which only the template's own markers become
special tokens.

The bound. Every token the engine's tokenizer emits stands for a run of the input's bytes (an added
token for its text, a BPE token for its bytes, a SentencePiece byte token for one byte), so a text
of N bytes is at least N / M tokens, M being the most bytes one token stands for: the longest
token's bytes (times 3 for SentencePiece, whose pieces turn each 3-byte "▁" of a token's text into
one space). A text of n_ctx * M bytes or more therefore cannot fit in a context of n_ctx tokens
and is refused without tokenizing it; anything shorter is tokenized whole, so the count of a prompt
that fits stays exact. SentencePiece vocabularies without byte tokens fuse a run of unknown
characters into one token, which stands for any number of bytes: they get no bound (the body limit
still caps the work).

Chats. The engine renders a conversation into text that holds the template's special tokens by
their text (``<|eot_id|>``), meant to be tokenized with special-token parsing on; a message that
contains such a text would then become the control token, i.e. a forged turn. Here the template is
rendered once with a placeholder in place of each message's content, which gives the template's own
text around the contents and how it treats them (Jinja's ``| trim`` or not). When the special
tokens found in the whole text are exactly those of the template's text, the text is tokenized as
before (what the engine's own chat does). Otherwise the text is cut at the template's special
tokens only, the runs between them (template text and contents together, so tokens across their
joins are the usual ones) are tokenized with special-token parsing off, and the template's special
tokens are put in between: a message's ``<|eot_id|>`` is then plain text. Message contents never go
through C strings on that path, so a NUL byte is a byte like any other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bitnet.bindings import Model

# U+2003 EM SPACE pads the placeholders: Python whitespace, so Jinja's trim removes it, and text no
# template writes itself, so finding it next to a placeholder means the template kept it.
_PAD = "\u2003"
_SPM_SPACE = "\u2581".encode()


class ChatRenderError(Exception):
    """The template renders message contents in a way the placeholders cannot account for."""


@dataclass(frozen=True)
class Vocab:
    """What the server needs to know of a vocabulary, gathered once (vocab_scan).

    max_token_bytes: the most input bytes one token can stand for, None when unbounded;
    specials: the text of each control token (the tokens only special-token parsing produces) ->
    its id; special_re: a regex over bytes finding them leftmost-longest, as the tokenizer does
    (None when there are none)."""

    max_token_bytes: int | None
    specials: dict[bytes, int]
    special_re: re.Pattern[bytes] | None


def vocab_scan(model: Model) -> Vocab:
    """Scans the vocabulary: the bound on bytes per token and the control tokens' texts."""
    kind = model.meta_str("tokenizer.ggml.model")
    pieces = [model.token_to_piece(t) for t in range(model.n_vocab)]
    specials: dict[bytes, int] = {}
    for t, piece in enumerate(pieces):
        texts = [piece] + ([piece.replace(b" ", _SPM_SPACE)] if kind == "llama" and b" " in piece else [])
        for text in texts:
            # A control token never comes out of plain text; its text with parsing on is itself.
            if text and model.tokenize(text, False, False) != [t] and model.tokenize(text, False, True) == [t]:
                specials[text] = t
    longest = max(map(len, pieces), default=1)
    if kind == "gpt2":
        max_bytes: int | None = longest
    elif kind == "llama":
        # Two characters no vocabulary spells (plane 15 private use, 4 bytes each): with byte
        # tokens they come out as their 8 bytes, with fused unknowns as one token.
        probe = model.tokenize("\U000F0000\U000F0001", False, False)
        max_bytes = 3 * longest if len(probe) >= 8 else None
    else:
        max_bytes = None
    alts = sorted(specials, key=len, reverse=True)  # the longest of those starting at a position
    special_re = re.compile(b"|".join(re.escape(s) for s in alts)) if alts else None
    return Vocab(max_bytes, specials, special_re)


def surely_too_long(n_bytes: int, n_ctx: int, vocab: Vocab) -> int | None:
    """A lower bound of the tokens of a text of n_bytes bytes when it shows that the text cannot
    fit in n_ctx tokens; None when it has to be tokenized to know."""
    m = vocab.max_token_bytes
    if m is None or n_bytes < n_ctx * m:
        return None
    return -(-n_bytes // m)


@dataclass(frozen=True)
class ChatText:
    """A rendered conversation: ``parts`` (the template's text, bytes) around ``contents`` (each
    message's content as the template writes it, bytes): parts[0] + contents[0] + parts[1] + ...
    + parts[-1]. len(parts) == len(contents) + 1."""

    parts: list[bytes]
    contents: list[bytes]

    @property
    def text(self) -> bytes:
        out = [self.parts[0]]
        for c, p in zip(self.contents, self.parts[1:]):
            out += [c, p]
        return b"".join(out)


def _placeholder(i: int) -> str:
    return f"\ue000{i}\ue001"  # private use: no template or vocabulary text holds it


def chat_render(model: Model, messages: Sequence[dict[str, str]], template: str | None = None) -> ChatText:
    """Renders messages ([{"role", "content"}], contents any str, NUL included) with the model's
    template (or ``template``, a built-in name) and the assistant's opening. Raises BitnetError (no or unknown template) and
    ChatRenderError (a template that treats contents otherwise than writing them, trimmed or not,
    once or never)."""
    padded = [{"role": m["role"], "content": _PAD + _placeholder(i) + _PAD} for i, m in enumerate(messages)]
    rendered = model.chat_apply(padded, add_assistant=True, template=template)
    parts: list[bytes] = []
    contents: list[bytes] = []
    pos = 0
    for i, m in enumerate(messages):
        ph = _placeholder(i)
        n = rendered.count(ph)
        if n == 0:  # the template leaves this message out
            continue
        if n > 1:
            raise ChatRenderError(f"the chat template writes message {i} {n} times")
        at = rendered.index(ph)
        lead = rendered[at - 1:at] == _PAD
        trail = rendered[at + len(ph):at + len(ph) + 1] == _PAD
        start, end = at - lead, at + len(ph) + trail
        if start < pos:
            raise ChatRenderError("the chat template writes the messages out of order")
        content = m["content"]
        content = content if lead else content.lstrip()
        content = content if trail else content.rstrip()
        parts.append(rendered[pos:start].encode())
        contents.append(content.encode())
        pos = end
    parts.append(rendered[pos:].encode())
    if _PAD in b"".join(parts).decode():
        raise ChatRenderError("the chat template changes message contents")
    chat = ChatText(parts, contents)
    # The contents are known only through the placeholders: check against the real rendering
    # (which C strings cut at a NUL, so not for contents holding one).
    if not any("\0" in m["content"] for m in messages):
        if model.chat_apply(messages, add_assistant=True, template=template).encode() != chat.text:
            raise ChatRenderError("the chat template changes message contents")
    return chat


def _markers(chat: ChatText, vocab: Vocab) -> list[tuple[int, int, int]]:
    """The special tokens in the template's text: (start, end, token) in the whole text."""
    out, pos = [], 0
    for k, part in enumerate(chat.parts):
        if vocab.special_re is not None:
            out += [(pos + m.start(), pos + m.end(), vocab.specials[m.group()])
                    for m in vocab.special_re.finditer(part)]
        pos += len(part) + (len(chat.contents[k]) if k < len(chat.contents) else 0)
    return out


def chat_tokens(model: Model, vocab: Vocab, chat: ChatText) -> list[int]:
    """The conversation's tokens, special tokens only where the template writes them."""
    text = chat.text
    markers = _markers(chat, vocab)
    found = [] if vocab.special_re is None else \
        [(m.start(), m.end(), vocab.specials[m.group()]) for m in vocab.special_re.finditer(text)]
    if found == markers:  # no special text in the contents: the engine's own tokenization
        return model.tokenize(text, False, True)
    return split_tokens(model, text, markers)


def split_tokens(model: Model, text: bytes, markers: Sequence[tuple[int, int, int]]) -> list[int]:
    """text tokenized without special-token parsing between the markers ((start, end, token),
    in order), and each marker's token in its place."""
    out: list[int] = []
    pos = 0
    for start, end, token in markers:
        if start > pos:
            out += model.tokenize(text[pos:start], False, False)
        out.append(token)
        pos = end
    if pos < len(text):
        out += model.tokenize(text[pos:], False, False)
    return out
