"""bindrt search: nearest items of an index to a query of any modality, terms combined by embedding arithmetic."""

from __future__ import annotations

import argparse

#: Query flags -> input kinds (``--image`` is the vision encoder's image input).
QUERY_FLAGS = {"text": "text", "image": "vision", "video": "video", "audio": "audio", "depth": "depth",
               "thermal": "thermal", "imu": "imu"}  # fmt: skip


class _Term(argparse.Action):
    """Keeps query terms in the order given, across flags."""

    def __call__(self, parser, namespace, values, option_string=None):
        terms = list(getattr(namespace, "terms", None) or [])
        terms.append((QUERY_FLAGS[self.dest.removeprefix("q_")], values))
        namespace.terms = terms


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search an index with text, images, audio, ... or their combination",
        description="Embeds each query term with the index's bundle, combines them (sum of unit embeddings, "
        "--weights and --minus applied, renormalised) and prints the nearest indexed items by cosine.",
    )
    p.add_argument("index")
    for flag in QUERY_FLAGS:
        p.add_argument(f"--{flag}", dest=f"q_{flag}", action=_Term, metavar="T" if flag == "text" else "FILE")
    p.add_argument("--minus", action="append", default=[], metavar="KIND:VALUE", help="subtract a term, e.g. text:red")
    p.add_argument("--weights", help="comma-separated weights of the query terms, in order (default 1 each)")
    p.add_argument("--modality", help="return only items of this input kind")
    p.add_argument("-k", type=int, default=10, help="results (default 10)")
    p.add_argument(
        "--centre", action="store_true", help="subtract each term's modality mean (the index's) before combining terms"
    )
    p.add_argument("--exact", action="store_true", help="exact search even where the index has FAISS")
    p.add_argument("--bundle", help="the bundle to embed queries with (default: the one that built the index)")
    p.add_argument("--backend", default="torch")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run, terms=None)


def parse_minus(spec: str) -> tuple[str, str]:
    from bindrt.errors import ConfigError

    kind, sep, value = spec.partition(":")
    if not sep or kind not in QUERY_FLAGS or not value:
        raise ConfigError(f"--minus {spec!r}: expected KIND:VALUE with KIND one of {', '.join(QUERY_FLAGS)}")
    return QUERY_FLAGS[kind], value


def run(args: argparse.Namespace) -> int:
    import json

    from bindrt.cli.output import make_console, make_table
    from bindrt.errors import ConfigError
    from bindrt.index import Index, Term

    terms = args.terms or []
    if not terms:
        raise ConfigError("no query; expected at least one of " + ", ".join(f"--{f}" for f in QUERY_FLAGS))
    weights = [1.0] * len(terms)
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights {args.weights!r}: expected comma-separated numbers") from None
        if len(weights) != len(terms):
            raise ConfigError(f"--weights has {len(weights)} numbers for {len(terms)} query terms; give one per term")
    minus = [Term(*parse_minus(m)) for m in args.minus]
    if args.k < 1:
        raise ConfigError(f"-k {args.k}: expected a number of results >= 1")
    with Index.open(args.index) as index:
        if args.bundle or args.backend != "torch":
            index.model(args.bundle, args.backend)
        hits = index.search(
            [Term(k, v, w) for (k, v), w in zip(terms, weights)],
            minus=minus,
            k=args.k,
            modality=args.modality,
            exact=True if args.exact else None,
            centre=args.centre,
        )
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=1))
        return 0
    table = make_table("rank", "score", "kind", "item", "text")
    for h in hits:
        where = h.path if h.line is None else f"{h.path}:{h.line}"
        table.add_row(str(h.rank), f"{h.score:.4f}", h.kind, where, h.text or "")
    make_console().print(table)
    return 0
