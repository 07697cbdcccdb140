"""The bulk front ends' shared passes: the list structure of a property text, and the disjunctive
normal form of its asserts, in numpy, without a Python step per token or per relation.

VNN-LIB 1.0 (`vnnlib1.py`) and 2.0 (`vnnlib2_bulk.py`) have the same shape of assertions,
`(assert ...)` over nested `and` / `or` lists whose leaves are three-token relations
`(op A B)`; they differ in their declarations and in how a variable or a number is spelled.
`scan` classifies the text (parentheses, whitespace, tokens, lists and their levels, the branch
lists and their parents); `assertion_dnf` checks the branch lists' heads and builds the DNF over
atom ranges once the front end has made the atoms of the relations. Either gives up
(`GiveUp`) on anything outside those shapes, and the front end's general path takes over.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .dnf import MAX_DISJUNCTS, Dnf, TooManyDisjuncts, conjoin_all, ragged

_COMMENT = re.compile(r";[^\n]*")
# ASCII control characters that str.split() and the tokenizers' \s do not treat as whitespace
_CONTROL = bytes(range(0, 9)) + bytes(range(14, 28))
PAD = 64  # zero bytes appended to the text so that column reads never run off its end


class GiveUp(Exception):
    """Internal: the bulk front end does not handle this text; the general front end will."""


def _blank(m: "re.Match") -> str:
    return " " * len(m.group(0))


def chars(b: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(m, width) uint8: the first `width` characters from each start (padded with 0 past the end)."""
    pos = starts[:, None] + np.arange(width)
    out = b[np.minimum(pos, b.size - 1)]
    out[pos >= b.size] = 0
    return out


def is_word(b: np.ndarray, ts: np.ndarray, te: np.ndarray, word: bytes) -> np.ndarray:
    n = len(word)
    ok = (te - ts) == n
    if ok.any():
        ok[ok] = (chars(b, ts[ok], n) == np.frombuffer(word, np.uint8)).all(axis=1)
    return ok


@dataclass
class Scan:
    """The list structure of a text. Lists are numbered by their '(' in text order; `level` 1 is
    the top level. Tokens (maximal runs of characters other than whitespace and parentheses) are
    `ts[k]:te[k]`. Innermost lists (no sub-list) are `ii`, with `inner_ntok` tokens each, the first
    being token `first[list]`; branch lists (with sub-lists) are `bi`, each with exactly one token
    (its head) before its first sub-list, its ')' at `b_close_at`, its parent branch `b_parent`
    (-1 at the top level)."""

    text: str  # comments blanked (same length: offsets are the original text's)
    b: np.ndarray
    bp: np.ndarray  # b and PAD zero bytes
    open_at: np.ndarray
    level: np.ndarray
    inner: np.ndarray
    first: np.ndarray
    ts: np.ndarray
    te: np.ndarray
    ii: np.ndarray
    inner_ntok: np.ndarray
    bi: np.ndarray
    b_hs: np.ndarray
    b_he: np.ndarray
    b_level: np.ndarray
    b_close_at: np.ndarray
    b_parent: np.ndarray


def scan(text: str) -> Scan:
    """The list structure of `text`; GiveUp for non-ASCII text, control characters, unbalanced
    parentheses, a token outside a list or after a sub-list, an empty list, a branch list with
    more than its head before its first sub-list."""
    if ";" in text:
        text = _COMMENT.sub(_blank, text)  # same length: offsets stay those of the original text
    if not text.isascii():
        raise GiveUp
    raw = text.encode("ascii")
    if len(raw.translate(None, _CONTROL)) != len(raw):
        raise GiveUp  # control characters that are token characters for the tokenizer
    if not raw:
        raise GiveUp
    b = np.frombuffer(raw, dtype=np.uint8)
    bp = np.frombuffer(raw + bytes(PAD), dtype=np.uint8)  # for column reads past a token's end

    # ---- parentheses ---------------------------------------------------------------------------
    is_open = b == ord("(")
    paren = is_open | (b == ord(")"))
    ev = np.flatnonzero(paren)
    if ev.size == 0:
        raise GiveUp
    ev_open = is_open[ev]
    depth = np.cumsum(ev_open.view(np.int8) * np.int8(2) - np.int8(1), dtype=np.int64)  # depth after each event
    if depth[-1] != 0 or depth.min() < 0:
        raise GiveUp
    oe = np.flatnonzero(ev_open)  # event index of every list's '('
    level = depth[oe]  # 1 for top-level lists
    inner = ~ev_open[oe + 1]  # the next parenthesis closes it: no sub-lists
    open_at = ev[oe]

    # ---- tokens ----------------------------------------------------------------------------------
    edge = np.zeros(b.size + 2, dtype=np.int8)
    tc = edge[1:-1].view(bool)
    np.greater(b, 32, out=tc)  # every other ASCII character <= 32 is whitespace here
    tc[ev] = False
    step = np.diff(edge)  # +1 where a token starts, -1 just past its end
    bounds = np.flatnonzero(step)
    ts, te = bounds[0::2], bounds[1::2]
    if ts.size and ts[0] < ev[0]:
        raise GiveUp  # a token before the first '('
    # gap[k]: number of tokens between parenthesis k and the next one
    gap = np.add.reduceat((step[:b.size] == 1).view(np.int8), ev, dtype=np.int64)
    if gap[~ev_open].any():
        raise GiveUp  # a token after a ')': bare tokens beside sub-lists, or at the top level
    first_after = np.cumsum(gap) - gap  # index of the first token after each parenthesis
    first = first_after[oe]  # the head token of each list
    own = gap[oe]  # tokens of a list before its first sub-list (all of them if innermost)
    if not own.all():
        raise GiveUp  # `()` or `((...` : the general front end explains
    if (own[~inner] != 1).any():
        raise GiveUp  # a branch list with more than its head before its first sub-list

    # ---- branch lists (assert / and / or), their closing parenthesis and their parents ------------
    bi = np.flatnonzero(~inner)  # list ids of branch lists
    b_head_tok = first[bi]
    b_level = level[bi]
    # a branch list's ')' is the next ')' at its level; closes of branch lists follow a ')'
    ce = np.flatnonzero(~ev_open)
    ce = ce[~ev_open[ce - 1]] if ce.size else ce
    c_level = depth[ce] + 1
    big = np.int64(ev.size + 1)
    ckey = c_level.astype(np.int64) * big + ce
    ckey.sort()
    b_close_ev = ckey[np.searchsorted(ckey, b_level.astype(np.int64) * big + oe[bi])] % big
    # parent of every branch list: the last branch list one level up opened before it
    bkey = b_level.astype(np.int64) * big + oe[bi]
    border = np.argsort(bkey, kind="stable")  # by (level, position)
    bkey_sorted = bkey[border]
    b_parent = np.full(bi.size, -1, dtype=np.int64)  # branch index, -1 for the top level
    deep = np.flatnonzero(b_level > 1)
    if deep.size:
        k = np.searchsorted(bkey_sorted, (b_level[deep] - 1).astype(np.int64) * big + oe[bi[deep]]) - 1
        b_parent[deep] = border[k]
    ii = np.flatnonzero(inner)
    return Scan(text, b, bp, open_at, level, inner, first, ts, te, ii, own[inner], bi, ts[b_head_tok],
                te[b_head_tok], b_level, ev[b_close_ev], b_parent)


def assertion_dnf(s: Scan, rel_list: np.ndarray, atom_off: np.ndarray):
    """(the asserts' DNF over atom ranges, number of asserts): every branch list is `assert` at the
    top level (one child) and `and` / `or` below; `rel_list` are the innermost lists that are
    relations (text order), relation k's atoms are atom_off[k]:atom_off[k+1]. GiveUp otherwise."""
    b, bi, b_hs, b_he, b_level = s.b, s.bi, s.b_hs, s.b_he, s.b_level
    open_at = s.open_at
    is_assert = is_word(b, b_hs, b_he, b"assert")
    is_and = is_word(b, b_hs, b_he, b"and")
    is_or = is_word(b, b_hs, b_he, b"or")
    if not (is_assert | is_and | is_or).all():
        raise GiveUp
    if ((b_level == 1) != is_assert).any() or not is_assert.any():
        raise GiveUp
    if (s.level[rel_list] == 1).any():
        raise GiveUp  # a relation as a top-level command
    # every list below the top level is a relation or a branch list now; relations inside each
    # branch list: rel_at[b_r0:b_r1]
    rel_at = open_at[rel_list]
    b_r0 = np.searchsorted(rel_at, open_at[bi])
    b_r1 = np.searchsorted(rel_at, s.b_close_at)
    if (b_r1 == b_r0).any():
        raise GiveUp  # a branch list without a relation (the general front end handles odd shapes)
    b_parent = s.b_parent
    n_sub = np.bincount(b_parent[b_parent >= 0], minlength=bi.size)
    flat = n_sub == 0  # no branch sub-lists: all relations inside are its children
    sub_order = np.argsort(b_parent, kind="stable")
    sub_start = np.searchsorted(b_parent[sub_order], np.arange(bi.size))
    # an assert has one child: one relation, or one sub-list holding all its relations
    a_idx = np.flatnonzero(is_assert)
    a_flat = flat[a_idx]
    if (b_r1[a_idx[a_flat]] - b_r0[a_idx[a_flat]] != 1).any():
        raise GiveUp
    a_deep = a_idx[~a_flat]
    child = sub_order[sub_start[a_deep]]
    if ((n_sub[a_deep] != 1) | (b_r0[child] != b_r0[a_deep]) | (b_r1[child] != b_r1[a_deep])).any():
        raise GiveUp

    def own_relations(j: int, subs: np.ndarray) -> np.ndarray:
        """Relations that are children of branch list j itself (not inside its sub-lists)."""
        r0, r1 = int(b_r0[j]), int(b_r1[j])
        cover = np.bincount(b_r0[subs] - r0, minlength=r1 - r0 + 1) - np.bincount(b_r1[subs] - r0, minlength=r1 - r0 + 1)
        return np.flatnonzero(np.cumsum(cover)[:-1] == 0) + r0

    def dnf(j: int) -> Dnf:
        if flat[j]:
            if is_or[j]:
                rr = np.arange(b_r0[j], b_r1[j])
                return Dnf.each(atom_off[rr], atom_off[rr + 1])
            return Dnf.single(int(atom_off[b_r0[j]]), int(atom_off[b_r1[j]]))  # and, assert
        subs = sub_order[sub_start[j]:sub_start[j] + n_sub[j]]
        if is_assert[j]:
            return dnf(int(subs[0]))
        rels = own_relations(j, subs)
        if is_or[j] and flat[subs].all():
            # the usual shape, (or (and ...) (and ...) ...), in bulk: every child relation, flat
            # and, and relation of a flat or is one disjunct of one range; text order
            sub_or = subs[is_or[subs]]
            sub_and = subs[~is_or[subs]]
            or_rel = ragged(b_r0[sub_or], b_r1[sub_or] - b_r0[sub_or])
            singles = np.concatenate([rels, or_rel])
            pos = np.concatenate([rel_at[singles], open_at[bi[sub_and]]])
            start = np.concatenate([atom_off[singles], atom_off[b_r0[sub_and]]])
            stop = np.concatenate([atom_off[singles + 1], atom_off[b_r1[sub_and]]])
            order = np.argsort(pos, kind="stable")
            return Dnf.each(start[order], stop[order])
        if is_or[j]:
            got = or_of_two_levels(j, subs, rels)
            if got is not None:
                return got
        # any other nesting: the conjunctions as lists of atom ranges, in plain Python over ints
        # (a numpy call per node costs more than this on the many small nodes of such shapes)
        return _from_ranges(conjunctions(j))

    def or_of_two_levels(j: int, subs: np.ndarray, rels: np.ndarray):
        """(or ...) whose children are relations, flat lists, and `and`s holding relations and one
        `or` of flat `and`s (the shape VNN-LIB 2.0 writers give a property with several input
        boxes: (or (and box... (or (and out...) (and out...))) ...)), in bulk; None otherwise.
        Each grandchild is one disjunct: the `and`'s relations before the `or`, the grandchild's,
        the `and`'s after it; text order."""
        deep = subs[~flat[subs]]
        if deep.size == 0 or is_or[deep].any() or (n_sub[deep] != 1).any():
            return None
        g = sub_order[sub_start[deep]]
        if not (is_or[g] & (n_sub[g] > 0)).all():
            return None
        gi = np.repeat(np.arange(g.size), n_sub[g])
        gc = sub_order[ragged(sub_start[g], n_sub[g])]
        if not (flat[gc] & ~is_or[gc]).all():
            return None
        if (np.bincount(gi, b_r1[gc] - b_r0[gc], minlength=g.size) != b_r1[g] - b_r0[g]).any():
            return None  # the `or` has relations of its own
        shallow = subs[flat[subs]]
        sub_or = shallow[is_or[shallow]]
        sub_and = shallow[~is_or[shallow]]
        or_rel = ragged(b_r0[sub_or], b_r1[sub_or] - b_r0[sub_or])
        singles = np.concatenate([rels, or_rel])
        c = deep[gi]
        # per disjunct up to three ranges: before, own, after (empty ones dropped)
        n1 = singles.size + sub_and.size
        pos = np.concatenate([rel_at[singles], open_at[bi[sub_and]], open_at[bi[gc]]])
        lo = np.stack([np.concatenate([atom_off[singles], atom_off[b_r0[sub_and]], atom_off[b_r0[c]]]),
                       np.concatenate([np.zeros(n1, np.int64), atom_off[b_r0[gc]]]),
                       np.concatenate([np.zeros(n1, np.int64), atom_off[b_r1[g[gi]]]])], axis=1)
        hi = np.stack([np.concatenate([atom_off[singles + 1], atom_off[b_r1[sub_and]], atom_off[b_r0[g[gi]]]]),
                       np.concatenate([np.zeros(n1, np.int64), atom_off[b_r1[gc]]]),
                       np.concatenate([np.zeros(n1, np.int64), atom_off[b_r1[c]]])], axis=1)
        order = np.argsort(pos, kind="stable")
        lo, hi = lo[order], hi[order]
        keep = hi > lo
        rptr = np.zeros(order.size + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=rptr[1:])
        if order.size > MAX_DISJUNCTS:
            raise TooManyDisjuncts()
        return Dnf(rptr, lo[keep], hi[keep])

    r0l, r1l, offl = b_r0.tolist(), b_r1.tolist(), atom_off.tolist()
    orl, flatl = is_or.tolist(), flat.tolist()
    sol, ssl, nsl = sub_order.tolist(), sub_start.tolist(), n_sub.tolist()

    def children(j: int) -> list:
        return sol[ssl[j]:ssl[j] + nsl[j]]

    def conjunctions(j: int) -> list:
        """Branch list j's DNF: a list of conjunctions, each a list of (start, stop) atom ranges,
        in text order (an `or`: its children's disjuncts in turn; an `and`: its children's
        products, i-major, relations in runs)."""
        cursor = r0l[j]
        if orl[j]:
            out = []
            for c in children(j):
                out.extend([(offl[r], offl[r + 1])] for r in range(cursor, r0l[c]))
                if flatl[c] and not orl[c]:
                    out.append([(offl[r0l[c]], offl[r1l[c]])])
                else:
                    out.extend(conjunctions(c))
                cursor = r1l[c]
            out.extend([(offl[r], offl[r + 1])] for r in range(cursor, r1l[j]))
            if len(out) > MAX_DISJUNCTS:
                raise TooManyDisjuncts()
            return out
        result = [[]]
        for c in children(j):
            if cursor < r0l[c]:
                for conj in result:
                    conj.append((offl[cursor], offl[r0l[c]]))
            sub = [[(offl[r0l[c]], offl[r1l[c]])]] if flatl[c] and not orl[c] else conjunctions(c)
            if len(sub) == 1:
                for conj in result:
                    conj.extend(sub[0])
            else:
                if len(result) * len(sub) > MAX_DISJUNCTS:
                    raise TooManyDisjuncts()
                result = [a + b for a in result for b in sub]
            cursor = r1l[c]
        if cursor < r1l[j]:
            for conj in result:
                conj.append((offl[cursor], offl[r1l[j]]))
        return result

    asserts = np.flatnonzero(is_assert)  # in text order
    # plain asserts (one relation each) in bulk: each run of them is one conjunction of ranges
    plain = flat[asserts]
    cut = np.flatnonzero(np.diff(plain.view(np.int8))) + 1
    parts = []
    for run in np.split(asserts, cut):
        if flat[run[0]]:
            parts.append(Dnf.join_single([Dnf(np.array([0, run.size]), atom_off[b_r0[run]], atom_off[b_r1[run]])]))
        else:
            parts.extend(dnf(j) for j in run.tolist())
    return conjoin_all(parts), int(asserts.size), bi[is_assert]


def _from_ranges(conjs: list) -> Dnf:
    """Conjunctions given as lists of (start, stop) atom ranges -> a Dnf (adjacent ranges merged)."""
    rptr, rs, re_ = [0], [], []
    for conj in conjs:
        last = -1
        for a, b in conj:
            if a == b:
                continue
            if a == last:
                re_[-1] = b
            else:
                rs.append(a)
                re_.append(b)
            last = b
        rptr.append(len(rs))
    return Dnf(rptr, rs, re_)
