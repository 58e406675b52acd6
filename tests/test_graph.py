"""Dependency order, cycles and rendering."""

from __future__ import annotations

import pytest

from nanobuild import graph

BOUTIQUE_LIKE = {
    "ad": (),
    "cart": (),
    "catalog": (),
    "checkout": ("cart", "catalog"),
    "recommendation": ("catalog",),
}


def test_order_puts_dependencies_first() -> None:
    order = graph.order(BOUTIQUE_LIKE)
    assert order == ["ad", "cart", "catalog", "checkout", "recommendation"]
    for node, deps in BOUTIQUE_LIKE.items():
        assert all(order.index(dep) < order.index(node) for dep in deps)


def test_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle among a, b"):
        graph.order({"a": ("b",), "b": ("a",), "c": ()})


def test_cycles_are_reported_once_from_their_smallest_name() -> None:
    cycles = graph.cycles({"b": ("c",), "c": ("a",), "a": ("b",), "d": ("d",), "e": ("a",)})
    assert cycles == [["a", "b", "c", "a"], ["d", "d"]]


def test_no_cycles() -> None:
    assert graph.cycles(BOUTIQUE_LIKE) == []


def test_text_tree_marks_repeats() -> None:
    text = graph.render_text(BOUTIQUE_LIKE, "shop")
    assert text.splitlines() == [
        "shop",
        "├── ad",
        "├── checkout",
        "│   ├── cart",
        "│   └── catalog",
        "└── recommendation",
        "    └── catalog",
    ]
    deep = {"a": ("b",), "b": ("c",), "c": (), "d": ("b",)}
    assert graph.render_text(deep, "x").splitlines() == [
        "x",
        "├── a",
        "│   └── b",
        "│       └── c",
        "└── d",
        "    └── b (*)",
    ]


def test_text_tree_shows_services_caught_in_a_cycle() -> None:
    text = graph.render_text({"a": ("b",), "b": ("a",)}, "x")
    assert "a" in text and "(cycle)" in text
