"""The rubricator data file and the API over it."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from lookalike.taxonomy import Category, Rubricator, RubricatorError, load_rubricator, normalize

ROOT_NAMES = {"womens-clothing", "mens-clothing", "womens-shoes", "mens-shoes", "bags", "newborn-clothing"}


@pytest.fixture(scope="module")
def rubricator() -> Rubricator:
    return load_rubricator()


def packaged_document() -> dict:
    return yaml.safe_load(resources.files("lookalike").joinpath("data/rubricator.yaml").read_text("utf-8"))


def write_rubricator(tmp_path: Path, categories: list[dict], next_id: int = 100) -> Path:
    path = tmp_path / "rubricator.yaml"
    path.write_text(yaml.safe_dump({"next_id": next_id, "categories": categories}, allow_unicode=True), "utf-8")
    return path


def small_tree(*extra_children: dict) -> list[dict]:
    """One root with a dress subtree; extra children go under the root."""
    dress = {
        "id": 2,
        "name": "dress",
        "title": "Dresses",
        "aliases": ["платье"],
        "children": [
            {"id": 3, "name": "mini-dress", "title": "Mini dress", "aliases": ["платье мини"]},
            {"id": 4, "name": "midi-dress", "title": "Midi dress", "aliases": ["платье миди"]},
        ],
    }
    root = {"id": 1, "name": "womens-clothing", "title": "Women's clothing", "gender": "women"}
    return [{**root, "children": [dress, *extra_children]}]


# The packaged tree.


def test_has_at_least_200_leaves(rubricator):
    leaves = rubricator.leaves()
    assert len(leaves) >= 200
    assert all(rubricator.is_leaf(leaf.id) and not rubricator.children(leaf.id) for leaf in leaves)


def test_ids_are_unique_and_below_next_id():
    document = packaged_document()
    ids = []

    def collect(nodes):
        for node in nodes:
            ids.append(node["id"])
            collect(node.get("children", []))

    collect(document["categories"])
    assert len(ids) == len(set(ids))
    assert max(ids) < document["next_id"]


def test_ids_are_stable(rubricator):
    # Ids live in vector-store payloads and mapping files: renumbering the file must fail here.
    assert [(c.id, c.name) for c in rubricator.roots()] == [
        (1, "womens-clothing"),
        (116, "mens-clothing"),
        (195, "womens-shoes"),
        (232, "mens-shoes"),
        (260, "bags"),
        (292, "newborn-clothing"),
    ]
    assert rubricator.get("midi-dress").id == 4


def test_every_leaf_rolls_up_to_one_of_the_six_roots(rubricator):
    assert {root.name for root in rubricator.roots()} == ROOT_NAMES
    for leaf in rubricator.leaves():
        root = rubricator.roll_up(leaf.id, 0)
        assert root.name in ROOT_NAMES and root.parent_id is None
        assert leaf.depth >= 1 and rubricator.path(leaf.id)[0] == root


def test_every_category_has_a_gender_from_its_root(rubricator):
    expected = {
        "womens-clothing": "women",
        "mens-clothing": "men",
        "womens-shoes": "women",
        "mens-shoes": "men",
        "bags": "unisex",
        "newborn-clothing": "baby",
    }
    for category in rubricator:
        assert category.gender == expected[rubricator.roll_up(category.id, 0).name], category.name


def test_every_category_has_a_russian_alias(rubricator):
    cyrillic = re.compile("[а-яё]", re.IGNORECASE)
    missing = [c.name for c in rubricator if not any(cyrillic.search(alias) for alias in c.aliases)]
    assert missing == []


def test_lookup_by_id_name_and_alias(rubricator):
    midi = rubricator.get("midi-dress")
    assert isinstance(midi, Category) and midi.title == "Midi dress"
    assert rubricator.get(midi.id) is midi
    assert rubricator.get("платье миди") is midi
    assert rubricator.get("  Миди   ПЛАТЬЕ ") is midi
    assert rubricator.get("Midi-Dress") is midi


def test_lookup_folds_yo(rubricator):
    # The alias is written "женская дубленка"; shops write it with ё.
    assert rubricator.get("Женская дублёнка").name == "womens-sheepskin-coat"


def test_unknown_keys_raise_key_error_with_suggestions(rubricator):
    with pytest.raises(KeyError, match="no category named 'midi-dres'; did you mean midi-dress"):
        rubricator.get("midi-dres")
    with pytest.raises(KeyError, match="no category with id 999999"):
        rubricator.get(999999)
    assert "midi-dress" in rubricator and 999999 not in rubricator and None not in rubricator


def test_ancestors_path_and_roll_up_at_every_depth(rubricator):
    jacket = rubricator.get("womens-leather-jacket")
    path_names = ["womens-clothing", "womens-outerwear", "womens-jackets", "womens-leather-jacket"]
    assert [c.name for c in rubricator.ancestors(jacket.id)] == path_names[-2::-1]
    assert [c.name for c in rubricator.path(jacket.id)] == path_names
    assert jacket.depth == 3
    assert [rubricator.roll_up(jacket.id, depth).name for depth in range(5)] == [
        "womens-clothing",
        "womens-outerwear",
        "womens-jackets",
        "womens-leather-jacket",
        "womens-leather-jacket",
    ]
    assert rubricator.roll_up("maxi-dress", 1).name == "dress"
    assert rubricator.ancestors("bags") == []
    with pytest.raises(ValueError, match="depth"):
        rubricator.roll_up("maxi-dress", -1)


def test_children_descendants_and_leaves(rubricator):
    dress_kinds = {c.name for c in rubricator.children("dress")}
    assert {"mini-dress", "midi-dress", "maxi-dress"} <= dress_kinds
    assert not rubricator.is_leaf("dress") and rubricator.is_leaf("midi-dress")
    outerwear = {c.name for c in rubricator.descendants("womens-outerwear")}
    assert {"womens-jackets", "womens-leather-jacket", "fur-coat"} <= outerwear
    assert "womens-outerwear" not in outerwear
    below_roots = [c for root in rubricator.roots() for c in rubricator.descendants(root.id)]
    leaves_under_roots = [c for c in below_roots if rubricator.is_leaf(c.id)]
    assert sorted(c.id for c in leaves_under_roots) == sorted(c.id for c in rubricator.leaves())


def test_self_and_ancestor_ids_let_a_broad_filter_find_narrow_offers(rubricator):
    midi, dress, women = (rubricator.get(name).id for name in ("midi-dress", "dress", "womens-clothing"))
    assert rubricator.self_and_ancestor_ids("midi-dress") == [midi, dress, women]
    leaves = rubricator.leaves()
    found_by_dress_filter = {leaf.name for leaf in leaves if dress in rubricator.self_and_ancestor_ids(leaf.id)}
    assert found_by_dress_filter == {c.name for c in rubricator.descendants("dress") if rubricator.is_leaf(c.id)}
    assert {"mini-dress", "midi-dress", "maxi-dress"} <= found_by_dress_filter


def test_normalize_folds_case_whitespace_and_yo():
    assert normalize("  Ёлка\tи   ЁЖИК ") == "елка и ежик"


# Small trees written by the tests.


def test_load_reads_a_file_and_inherits_gender(tmp_path):
    boys = {"id": 5, "name": "mens-shirt", "title": "Men's shirt", "gender": "men"}
    rubricator = Rubricator.load(write_rubricator(tmp_path, small_tree(boys)))
    assert len(rubricator) == 5 and len(rubricator.leaves()) == 3
    assert rubricator.get("платье мини").gender == "women"
    assert rubricator.get("mens-shirt").gender == "men"


def test_alias_written_with_yo_is_found_with_ye(tmp_path):
    coat = {"id": 5, "name": "sheepskin-coat", "title": "Sheepskin coat", "aliases": ["Дублёнка"]}
    rubricator = Rubricator.load(write_rubricator(tmp_path, small_tree(coat)))
    assert rubricator.get("дубленка").name == "sheepskin-coat"


def test_retired_node_keeps_its_id_and_name_but_is_not_offered(tmp_path):
    retired = {"id": 5, "name": "slip-dress", "title": "Slip dress", "aliases": ["платье-комбинация"], "retired": True}
    successor = {"id": 6, "name": "lingerie-dress", "title": "Lingerie dress", "aliases": ["платье-комбинация"]}
    rubricator = Rubricator.load(write_rubricator(tmp_path, small_tree(retired, successor)))
    assert rubricator.get(5).retired and rubricator.get("slip-dress").id == 5
    assert rubricator.get("платье-комбинация").name == "lingerie-dress"  # the alias went to the successor
    assert 5 not in {c.id for c in rubricator.leaves()}
    assert 5 not in {c.id for c in rubricator.children(1)}
    assert 5 in {c.id for c in rubricator.children(1, include_retired=True)}


def test_retired_id_cannot_be_reused(tmp_path):
    retired = {"id": 5, "name": "slip-dress", "title": "Slip dress", "retired": True}
    newcomer = {"id": 5, "name": "shirt-dress", "title": "Shirt dress"}
    with pytest.raises(RubricatorError, match="id 5 of 'shirt-dress' is taken by 'slip-dress'"):
        Rubricator.load(write_rubricator(tmp_path, small_tree(retired, newcomer)))


def test_retired_name_cannot_be_reused(tmp_path):
    retired = {"id": 5, "name": "slip-dress", "title": "Slip dress", "retired": True}
    newcomer = {"id": 6, "name": "slip-dress", "title": "Slip dress again"}
    with pytest.raises(RubricatorError, match="'slip-dress' of 'slip-dress' already names 'slip-dress'"):
        Rubricator.load(write_rubricator(tmp_path, small_tree(retired, newcomer)))


def test_alias_naming_two_nodes_is_rejected(tmp_path):
    clash = {"id": 5, "name": "sundress", "title": "Sundress", "aliases": ["ПЛАТЬЕ  миди"]}
    with pytest.raises(RubricatorError, match="'ПЛАТЬЕ  миди' of 'sundress' already names 'midi-dress'"):
        Rubricator.load(write_rubricator(tmp_path, small_tree(clash)))


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        ({"id": 5, "name": "skirt", "title": "Skirt", "alias": ["юбка"]}, "unknown keys \\['alias'\\]"),
        ({"id": "5", "name": "skirt", "title": "Skirt"}, "'id' must be a positive integer"),
        ({"id": 5, "name": "Skirt", "title": "Skirt"}, "'name' must be a lower-case slug"),
        ({"id": 5, "name": "skirt", "title": ""}, "'title' must be a non-empty string"),
        ({"id": 5, "name": "skirt", "title": "Skirt", "gender": "girls"}, "'gender' must be one of"),
        (
            {
                "id": 5,
                "name": "skirt",
                "title": "Skirt",
                "retired": True,
                "children": [{"id": 6, "name": "mini-skirt", "title": "Mini skirt"}],
            },
            "its parent 'skirt' is retired",
        ),
        ({"id": 100, "name": "skirt", "title": "Skirt"}, "ids \\[100\\] are not below next_id 100"),
    ],
)
def test_loader_rejects_bad_nodes(tmp_path, node, reason):
    path = write_rubricator(tmp_path, small_tree(node))
    with pytest.raises(RubricatorError, match=reason) as caught:
        Rubricator.load(path)
    assert str(path) in str(caught.value)


def test_loader_requires_next_id(tmp_path):
    path = tmp_path / "rubricator.yaml"
    path.write_text(yaml.safe_dump({"categories": small_tree()}), "utf-8")
    with pytest.raises(RubricatorError, match="next_id"):
        Rubricator.load(path)
