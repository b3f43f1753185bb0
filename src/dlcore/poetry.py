"""Regular Tang poems (近体诗): a form checker and a form-aware (constrained) sampler.

A regular poem here has 4 lines (绝句) or 8 lines (律诗) of 5 or 7 characters each
(五言 / 七言); every line ends with a punctuation mark and no mark appears inside a
line. The corpus marks lines with `，` `。` `？` (and, in 9 of its 36,922 poems, `；`
or `！`). The constrained sampler writes `，` after
the odd lines and `。` or `？` after the even ones, as the couplets of the corpus do.

The sampler works with any model that has `step(x (B, T) int64, state) -> (logits
(B, T, V), state)`, such as `dlcore.models.rnn.RNNLM`.
"""

from __future__ import annotations

import unicodedata

import torch

from .sampling import sample_next

MARKS = "，。？！；"  # the corpus's punctuation; a line ends with one of them
LOST = "●"  # the corpus's placeholder for a character lost from the source
COMMA, STOPS = "，", ("。", "？")  # what the sampler writes after odd / even lines
LINE_LENGTHS, LINE_COUNTS = (5, 7), (4, 8)


def _is_line_char(ch: str) -> bool:
    """A character that may stand inside a line: no mark, space, ASCII or other
    punctuation (rare CJK extension and private-use characters are allowed)."""
    if len(ch) != 1 or ch in MARKS or ch.isascii():
        return False
    if ch == LOST:
        return True
    category = unicodedata.category(ch)  # private use (Co): rare glyphs of the corpus
    return category == "Co" or not category.startswith(("P", "S", "Z", "C"))


def poem_lines(text: str) -> list[str]:
    """The lines of a poem, without their end marks: '白日依山尽，黄河入海流。' ->
    ['白日依山尽', '黄河入海流']. Text after the last mark counts as one more line."""
    lines, current = [], []
    for ch in text:
        if ch in MARKS:
            lines.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        lines.append("".join(current))
    return lines


def poem_form(text: str) -> tuple[int, int] | None:
    """(number of lines, characters per line) of a regular poem, e.g. (4, 5) for a
    五言绝句; None when `text` is not one (wrong count or length, unequal lines, a
    missing final mark, an empty line, a character that is not a Chinese one)."""
    if not text or text[-1] not in MARKS:
        return None
    lines = poem_lines(text)
    n, length = len(lines), len(lines[0])
    if n not in LINE_COUNTS or length not in LINE_LENGTHS:
        return None
    if any(len(line) != length for line in lines):
        return None
    if not all(_is_line_char(ch) for line in lines for ch in line):
        return None
    return n, length


def is_regular(text: str) -> bool:
    """True when `text` has the form of a regular poem (see `poem_form`)."""
    return poem_form(text) is not None


def _allowed(
    line: torch.Tensor,
    pos: torch.Tensor,
    length: torch.Tensor,
    count: torch.Tensor,
    masks: dict[str, torch.Tensor],
    heads: torch.Tensor | None,
) -> torch.Tensor:
    """(B, V) bool: the tokens that keep each row a regular poem. Per row: `line`
    lines finished, `pos` characters written in the current one, `length` 5/7 (0 =
    not chosen yet), `count` 4/8 (0 = not chosen yet)."""
    chars, eos = masks["chars"], masks["eos"]

    def c(cond: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, 1), to broadcast over V
        return cond.unsqueeze(1)

    mark = torch.where(c(line % 2 == 0), masks["comma"], masks["stops"])  # (B, V)
    free = length == 0  # the first line, while its length is not chosen yet
    must_end = torch.where(free, pos == 7, pos == length)  # the line is full
    may_end = must_end | (free & (pos == 5))  # a 5-character first line may end
    line_chars = chars
    if heads is not None:  # an acrostic: the first character of line i is heads[i]
        first = torch.zeros_like(chars).unsqueeze(0).repeat(len(line), 1)
        first[torch.arange(len(line)), heads[line.clamp(max=len(heads) - 1)]] = True
        line_chars = torch.where(c(pos == 0), first, chars)
    allowed = (c(~must_end) & line_chars) | (c(may_end) & mark)
    at_break = (pos == 0) & (line > 0)  # between two lines
    finished = at_break & (line == count)
    may_stop = at_break & (count == 0) & (line == 4)
    allowed = torch.where(c(finished), eos, allowed)
    return allowed | (c(may_stop) & eos)


@torch.no_grad()
def sample_poems(
    model,
    vocab,
    n: int,
    *,
    constrained: bool = True,
    line_length: int | None = None,
    line_count: int | None = None,
    heads: str | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    max_tokens: int = 80,
    generator: torch.Generator | None = None,
) -> list[str]:
    """`n` poems sampled from `model`, one batch, starting from `<bos>`.

    Unconstrained (`constrained=False`): plain sampling until `<eos>` or `max_tokens`
    (only the non-text tokens `<pad>`, `<unk>`, `<bos>` are masked). Constrained: the
    logits of every step are masked to the tokens that keep the poem regular — marks
    only at line ends, `，` after odd and `。`/`？` after even lines, line length 5 or
    7 (fixed by `line_length`, else chosen by where the model ends the first line),
    4 or 8 lines (`line_count`, else chosen by whether the model stops after line 4),
    `<eos>` only at the end; with `heads` (e.g. '春夏秋冬') line i starts with
    heads[i] (an acrostic, 藏头诗, of len(heads) lines). The model's distribution is
    renormalised over the allowed tokens, then temperature / top-k / top-p apply.
    """
    if line_length not in (None, *LINE_LENGTHS):
        raise ValueError(f"line_length must be None, 5 or 7, got {line_length!r}")
    if line_count not in (None, *LINE_COUNTS):
        raise ValueError(f"line_count must be None, 4 or 8, got {line_count!r}")
    if heads is not None:
        if len(heads) not in LINE_COUNTS:
            raise ValueError(f"heads must have 4 or 8 characters, got {heads!r}")
        if line_count not in (None, len(heads)):
            raise ValueError(f"{len(heads)} heads but line_count={line_count}")
        unknown = [h for h in heads if h not in vocab.stoi or not _is_line_char(h)]
        if unknown:
            raise ValueError(f"head characters not in the vocabulary: {unknown}")
        line_count = len(heads)
    if not constrained and (line_length or line_count or heads):
        raise ValueError("line_length, line_count and heads need constrained=True")
    dev = next(model.parameters()).device
    v = len(vocab)

    def mask_of(tokens) -> torch.Tensor:
        m = torch.zeros(v, dtype=torch.bool, device=dev)
        m[[vocab.stoi[t] for t in tokens if t in vocab.stoi]] = True
        return m

    specials = mask_of(vocab.specials)
    masks = {
        "chars": ~specials & ~mask_of(MARKS),
        "comma": mask_of(COMMA),
        "stops": mask_of(STOPS),
        "eos": mask_of([vocab.itos[vocab.eos_id]]),
    }
    masks["chars"] &= torch.tensor([_is_line_char(t) for t in vocab.itos], device=dev)
    text_ok = ~specials | masks["eos"]  # what plain sampling may emit
    head_ids = None if heads is None else torch.tensor(vocab.encode(heads), device=dev)
    line, pos = (torch.zeros(n, dtype=torch.long, device=dev) for _ in range(2))
    length = torch.full((n,), line_length or 0, dtype=torch.long, device=dev)
    count = torch.full((n,), line_count or 0, dtype=torch.long, device=dev)
    is_mark = masks["comma"] | masks["stops"]
    x = torch.full((n, 1), vocab.bos_id, dtype=torch.long, device=dev)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    out, state = [], None
    for _ in range(max_tokens if not constrained else 8 * 8 + 1):
        logits, state = model.step(x, state)
        logits = logits[:, -1].float()
        if constrained:
            allowed = _allowed(line, pos, length, count, masks, head_ids)
            allowed = torch.where(done.unsqueeze(1), masks["eos"], allowed)
        else:
            allowed = text_ok.expand(n, v)
        logits = logits.masked_fill(~allowed, float("-inf"))
        ids = sample_next(
            logits,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
        ids = torch.where(done, vocab.eos_id, ids)
        out.append(ids)
        ended = is_mark[ids]
        length = torch.where(ended & (length == 0), pos, length)
        count = torch.where((line == 4) & (pos == 0) & (count == 0), 8, count)
        line, pos = line + ended.long(), torch.where(ended, 0, pos + 1)
        done |= ids == vocab.eos_id
        if bool(done.all()):
            break
        x = ids.unsqueeze(1)
    poems = []
    for row in torch.stack(out, 1).tolist():
        end = row.index(vocab.eos_id) if vocab.eos_id in row else len(row)
        poems.append("".join(vocab.decode(row[:end])))
    return poems
