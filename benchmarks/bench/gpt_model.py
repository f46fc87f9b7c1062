"""A character-level GPT trained with scalar Values, written the way single-file
micrograd-style programs write one, for row 7. It is written once and takes the Value
class as a parameter, so the same program runs on a plain-Python Value (PlainValue,
below), on cmicrograd.reference.Value and on cmicrograd.Value.

The model: token and position embeddings, RMSNorm, one attention layer with 4 heads
(keys and values cached per position, as a scalar program processes a word one token
at a time), an MLP block with relu, a linear head, softmax (the max of the logits' data,
a plain float, subtracted before exp) and cross-entropy. The optimizer is Adam written as
a plain Python loop over p.data / p.grad, with its moments in Python lists. The data
are a few hundred made-up words (random syllables from a fixed seed): the vocabulary is
the letters they use plus an end token, which also starts every word.
"""

from __future__ import annotations

import math
import random
from typing import Any, List, Sequence, Tuple

WORD_SEED = 7
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


# ---- the data ------------------------------------------------------------------------------
def make_words(n: int = 300, seed: int = WORD_SEED) -> List[str]:
    """n words of 2-3 syllables (consonant + vowel, sometimes a closing consonant)."""
    rng = random.Random(seed)
    words = []
    for _ in range(n):
        word = ""
        for _ in range(rng.choice((2, 2, 3))):
            word += rng.choice(CONSONANTS) + rng.choice(VOWELS)
            if rng.random() < 0.2:
                word += rng.choice(CONSONANTS)
        words.append(word)
    return words


def vocabulary(words: Sequence[str]) -> Tuple[List[str], int]:
    """(the letters the words use, sorted; the end token's id, which follows them)."""
    letters = sorted(set("".join(words)))
    return letters, len(letters)


def encode(word: str, letters: Sequence[str], end: int) -> List[int]:
    """[end] + the word's letters + [end]: the end token also marks the start."""
    return [end] + [letters.index(ch) for ch in word] + [end]


# ---- a plain Value, of the kind such programs define inline ---------------------------------
class PlainValue:
    """A scalar with its children and their local gradients, recorded at each op;
    backward() sorts the graph with a recursive walk and applies the chain rule in
    reverse. (Deep graphs need sys.setrecursionlimit raised.)"""

    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        return PlainValue(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        return PlainValue(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return PlainValue(self.data ** other, (self,), (other * self.data ** (other - 1),))

    def log(self):
        return PlainValue(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return PlainValue(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return PlainValue(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other ** -1

    def __rtruediv__(self, other):
        return other * self ** -1

    def backward(self):
        topo = []
        visited = set()

        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build_topo(child)
                topo.append(v)

        build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


# ---- the model -------------------------------------------------------------------------------
def linear(x, w):
    return [sum(wi * xi for wi, xi in zip(row, x)) for row in w]


def rmsnorm(x):
    ms = sum(xi * xi for xi in x) / len(x)
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def softmax(logits):
    top = max(z.data for z in logits)
    exps = [(z - top).exp() for z in logits]
    total = sum(exps)
    return [e / total for e in exps]


class GPT:
    """One transformer block over Values of the class `Value`. Weights are drawn from
    random.Random(seed), so every Value class starts from the same numbers."""

    def __init__(self, Value: Any, vocab_size: int, n_embd: int = 16, block_size: int = 8,
                 n_head: int = 4, seed: int = 1) -> None:
        rng = random.Random(seed)

        def matrix(nout, nin, std=0.08):
            return [[Value(rng.gauss(0.0, std)) for _ in range(nin)] for _ in range(nout)]

        self.n_embd, self.block_size, self.n_head = n_embd, block_size, n_head
        self.head_dim = n_embd // n_head
        self.wte = matrix(vocab_size, n_embd)
        self.wpe = matrix(block_size, n_embd)
        self.wq = matrix(n_embd, n_embd)
        self.wk = matrix(n_embd, n_embd)
        self.wv = matrix(n_embd, n_embd)
        self.wo = matrix(n_embd, n_embd)
        self.fc1 = matrix(4 * n_embd, n_embd)
        self.fc2 = matrix(n_embd, 4 * n_embd)
        self.head = matrix(vocab_size, n_embd)
        mats = (self.wte, self.wpe, self.wq, self.wk, self.wv, self.wo, self.fc1, self.fc2, self.head)
        self.params = [p for mat in mats for row in mat for p in row]

    def logits(self, token, pos, keys, values):
        """The next token's logits at position pos; appends this position's key and
        value to the caches."""
        x = [t + p for t, p in zip(self.wte[token], self.wpe[pos])]
        x = rmsnorm(x)

        skip = x
        x = rmsnorm(x)
        q, k, v = linear(x, self.wq), linear(x, self.wk), linear(x, self.wv)
        keys.append(k)
        values.append(v)
        hd = self.head_dim
        attended = []
        for h in range(self.n_head):
            lo, hi = h * hd, (h + 1) * hd
            qh = q[lo:hi]
            scores = [sum(qi * ki for qi, ki in zip(qh, kt[lo:hi])) / hd ** 0.5 for kt in keys]
            weights = softmax(scores)
            for j in range(lo, hi):
                attended.append(sum(w * vt[j] for w, vt in zip(weights, values)))
        x = linear(attended, self.wo)
        x = [a + b for a, b in zip(x, skip)]

        skip = x
        x = rmsnorm(x)
        x = [h.relu() for h in linear(x, self.fc1)]
        x = linear(x, self.fc2)
        x = [a + b for a, b in zip(x, skip)]
        return linear(x, self.head)

    def loss(self, tokens):
        """The mean cross-entropy of predicting each next token of one encoded word
        (at most block_size positions)."""
        n = min(self.block_size, len(tokens) - 1)
        keys, values, losses = [], [], []
        for pos in range(n):
            probs = softmax(self.logits(tokens[pos], pos, keys, values))
            losses.append(-probs[tokens[pos + 1]].log())
        return sum(losses) / n


class Adam:
    """Adam as a plain loop over the parameters; it also zeroes their grads."""

    def __init__(self, params, lr=0.01, beta1=0.85, beta2=0.99, eps=1e-8):
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [0.0] * len(params)
        self.v = [0.0] * len(params)
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        m, v = self.m, self.v
        for i, p in enumerate(self.params):
            m[i] = b1 * m[i] + (1 - b1) * p.grad
            v[i] = b2 * v[i] + (1 - b2) * p.grad ** 2
            m_hat = m[i] / (1 - b1 ** self.t)
            v_hat = v[i] / (1 - b2 ** self.t)
            p.data -= self.lr * m_hat / (v_hat ** 0.5 + self.eps)
            p.grad = 0
