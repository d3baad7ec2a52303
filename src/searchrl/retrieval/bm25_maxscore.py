"""The ``sparse`` engine's kernel: exact top-k BM25 term at a time, with MaxScore-style pruning.

Unpruned (``prune=False``), the query's terms are added in the query's order into a float32 accumulator
that only their postings touch (kept per thread, reset after each query), and the top k is picked among
the touched passages: O(postings of the query's terms), scores bitwise those of bm25s's kernels (the same
float32 terms added in the same order).

Pruned, every term has an upper bound: the largest score it gives any passage (its posting list's
maximum). The terms are added rarest first (highest bound first). Before the next term, with ``theta`` the
k-th best partial score so far (kept as the postings are added) and ``rest`` the sum of the bounds of the
terms not yet added:

* a passage no added term touched scores at most ``rest``, so once ``theta > rest`` it cannot reach the
  top k, and the long posting lists of the common terms left need not be read;
* a touched passage whose partial score plus ``rest`` stays below ``theta`` cannot either.

The passages left (the candidates) are then scored in full, in the query's own term order, by binary search
in each term's posting list (doc ids ascending, which every bm25s builder and searchrl's streaming builder
write; the ``sorted`` kernel checks it once per index, and the engine does not prune where it fails).
Adding in the query's order makes the scores bitwise the unpruned ones (absent terms add nothing).

Either way the k best, ties broken by the lowest row, equal exhaustive BM25's top k; passages no term
touches (score 0) fill a short list, lowest row first. Comparisons against ``theta`` keep a margin
(:data:`MARGIN`, relative) far above float32's rounding of a sum of a few dozen terms, so rounding can only
add candidates, never drop one. Pruning stops being tried when the candidates' binary searches would cost
more than reading the lists left.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

MARGIN = 1e-4  # relative; float32 sums of <= 64 terms are off by < 64 * 6e-8


def _term_bounds(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """The largest score of each term's postings (0 for an empty list), float64."""
    n = len(indptr) - 1
    out = np.zeros(n, np.float64)
    for t in range(n):
        best = 0.0
        for p in range(indptr[t], indptr[t + 1]):
            if data[p] > best:
                best = data[p]
        out[t] = best
    return out


def _sorted_postings(indptr: np.ndarray, indices: np.ndarray) -> bool:
    for t in range(len(indptr) - 1):
        for p in range(indptr[t] + 1, indptr[t + 1]):
            if indices[p] <= indices[p - 1]:
                return False
    return True


def _sparse_top_k(
    flat: np.ndarray,
    pointers: np.ndarray,
    k: int,
    data: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    bounds: np.ndarray,
    acc: np.ndarray,
    touched: np.ndarray,
    prune: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows [Q, k], scores [Q, k], postings read per query [Q]). ``bounds``: each term's largest score
    (read only when pruning); ``acc`` and ``touched``: scratch buffers (float32 zeros and ints, one per
    passage), left as they came."""
    n_queries = len(pointers) - 1
    out_rows = np.zeros((n_queries, k), np.int64)
    out_scores = np.zeros((n_queries, k), np.float32)
    read = np.zeros(n_queries, np.int64)
    top_docs = np.zeros(k, np.int64)  # pruning: the k best partial scores so far, kept as postings are added
    top_scores = np.zeros(k, np.float32)
    for qi in range(n_queries):
        terms = flat[pointers[qi] : pointers[qi + 1]]
        m = len(terms)
        order = np.arange(m)
        rest = 0.0
        left = 0  # postings not read yet
        for j in range(m):
            left += indptr[terms[j] + 1] - indptr[terms[j]]
            if prune:
                rest += bounds[terms[j]]
        if prune:
            order = np.argsort(-bounds[terms], kind="mergesort")
        cost = m * (np.log2(max(left, 2)) + 1.0)  # rescoring one candidate, in posting reads
        n_touched = 0
        n_top = 0
        for oi in range(m):
            rest = max(rest, 0.0)
            if prune and n_top == k and oi > 0 and left > 2 * n_touched:
                theta = float(top_scores[k - 1])
                cut = theta - MARGIN * (theta + rest) - rest
                if cut > 0:  # nothing untouched can reach theta: stop if the candidates are few enough
                    n_cand = 0
                    for i in range(n_touched):
                        if acc[touched[i]] >= cut:
                            n_cand += 1
                    if n_cand * cost < left:
                        break
            term = terms[order[oi]]
            for p in range(indptr[term], indptr[term + 1]):
                doc = indices[p]
                if acc[doc] == 0:
                    touched[n_touched] = doc
                    n_touched += 1
                acc[doc] += data[p]
                score = acc[doc]
                if not prune or (n_top == k and score <= top_scores[k - 1]):
                    continue
                pos = -1  # scores only grow: doc enters the top k, or moves up in it
                for i in range(n_top):
                    if top_docs[i] == doc:
                        pos = i
                if pos < 0:
                    pos = n_top if n_top < k else k - 1
                    if n_top < k:
                        n_top += 1
                while pos > 0 and top_scores[pos - 1] < score:
                    top_docs[pos] = top_docs[pos - 1]
                    top_scores[pos] = top_scores[pos - 1]
                    pos -= 1
                top_docs[pos] = doc
                top_scores[pos] = score
            read[qi] += indptr[term + 1] - indptr[term]
            left -= indptr[term + 1] - indptr[term]
            rest -= bounds[term] if prune else 0.0
        cut = -1.0  # partial scores below it cannot reach the top k; -1: every touched passage is a candidate
        if prune and n_top == k:
            rest = max(rest, 0.0)
            theta = float(top_scores[k - 1])
            cut = theta - MARGIN * (theta + rest) - rest
        rows, scores = out_rows[qi], out_scores[qi]
        filled = 0
        for i in range(n_touched):  # best-first insertion; ties: the lower row first
            doc = touched[i]
            score = acc[doc]
            if score < cut:
                continue
            if prune:  # the full score, in the query's term order
                score = np.float32(0.0)
                for j in range(m):
                    lo, hi = indptr[terms[j]], indptr[terms[j] + 1]
                    while lo < hi:  # binary search: doc ids ascend within a posting list
                        mid = (lo + hi) >> 1
                        if indices[mid] < doc:
                            lo = mid + 1
                        else:
                            hi = mid
                    if lo < indptr[terms[j] + 1] and indices[lo] == doc:
                        score += data[lo]
            if filled == k and (score < scores[k - 1] or (score == scores[k - 1] and doc > rows[k - 1])):
                continue
            pos = filled if filled < k else k - 1
            while pos > 0 and (scores[pos - 1] < score or (scores[pos - 1] == score and rows[pos - 1] > doc)):
                rows[pos] = rows[pos - 1]
                scores[pos] = scores[pos - 1]
                pos -= 1
            rows[pos] = doc
            scores[pos] = score
            if filled < k:
                filled += 1
        row = 0
        while filled < k:  # fewer passages touched than k: score-0 rows, lowest first
            if acc[row] == 0:
                rows[filled] = row
                scores[filled] = 0
                filled += 1
            row += 1
        for i in range(n_touched):
            acc[touched[i]] = 0
    return out_rows, out_scores, read


@functools.cache
def kernels() -> dict[str, Any]:
    """The compiled functions (numba, with its disk cache), compiled on first use."""
    from numba import njit

    return {
        "top_k": njit(nogil=True, cache=True)(_sparse_top_k),
        "bounds": njit(nogil=True, cache=True)(_term_bounds),
        "sorted": njit(nogil=True, cache=True)(_sorted_postings),
    }
