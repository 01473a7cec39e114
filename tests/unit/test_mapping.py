"""Shop category paths mapped onto the rubricator through mapping files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.mapping import Categorizer, CategoryMapping, MappingError, UnmappedReport, canonical_path
from lookalike.taxonomy import Rubricator, gender_of, load_rubricator

EXAMPLE_FILE = Path(__file__).parents[1] / "data" / "mapping_example.txt"


def id_of(name: str) -> int:
    return load_rubricator().get(name).id


def mapping_of(*lines: str) -> CategoryMapping:
    return CategoryMapping.parse("\n".join(lines), load_rubricator(), source="shop.txt")


def test_canonical_path_folds_separators_case_spacing_and_yo():
    assert canonical_path("Женская  одежда>Дублёнки / ШУБЫ") == "женская одежда / дубленки / шубы"
    assert canonical_path(["Женская одежда ", "Брюки/Шорты"]) == "женская одежда / брюки / шорты"
    assert canonical_path(" / Платья / ") == "платья"


def test_exact_paths_match_in_canonical_form():
    mapping = mapping_of("Женская одежда / Платья / Миди => midi-dress", "Одежда > Дублёнки => womens-sheepskin-coat")
    assert mapping.map("ЖЕНСКАЯ ОДЕЖДА>платья >  миди") == id_of("midi-dress")
    assert mapping.map("одежда/дубленки") == id_of("womens-sheepskin-coat")
    assert mapping.map("Женская одежда / Платья") is None
    assert mapping.map("Женская одежда / Платья / Миди / Новинки") is None


def test_a_path_may_be_given_as_segments():
    mapping = mapping_of("Женская одежда / Платья / Миди => midi-dress", "Брюки/Шорты => womens-shorts")
    assert mapping.map(["Женская одежда", "Платья", "Миди"]) == id_of("midi-dress")
    assert mapping.map(("женская   одежда", "платья", "миди")) == id_of("midi-dress")
    assert mapping.map(["Брюки/Шорты"]) == mapping.map(["Брюки", "Шорты"]) == id_of("womens-shorts")


def test_target_may_be_a_name_an_alias_or_an_id():
    mapping = mapping_of("A => maxi-dress", "B => Платье  МАКСИ", f"C => {id_of('maxi-dress')}", "D => dress")
    assert {mapping.map(path) for path in "ABC"} == {id_of("maxi-dress")}
    assert mapping.map("D") == id_of("dress")  # inner nodes are fine targets


def test_glob_matches_the_whole_canonical_path():
    mapping = mapping_of("glob: */Юбки/* => skirt", "glob: *джинс* => womens-jeans")
    assert mapping.map("Женщинам / Юбки / Мини") == id_of("skirt")
    assert mapping.map("Женщинам > Одежда > юбки > Миди") == id_of("skirt")
    assert mapping.map("Юбки / Мини") is None  # '*/' needs a segment above
    assert mapping.map("Женщинам / Юбки") is None  # '/*' needs a segment below
    assert mapping.map("Женщинам / Джинсы скинни") == id_of("womens-jeans")


def test_regex_is_searched_case_insensitively_with_yo_folded():
    mapping = mapping_of(
        "re: кроссовк => womens-sneakers", "re: ^обувь / .*дутик => womens-snow-boots", "re: Дублёнк => fur-coat"
    )
    assert mapping.map("Женщинам / Обувь / КРОССОВКИ") == id_of("womens-sneakers")
    assert mapping.map("Обувь / Сапоги / Дутики") == id_of("womens-snow-boots")
    assert mapping.map("Женщинам / Обувь / Дутики") is None  # anchored at the root
    assert mapping.map("Дубленки") == id_of("fur-coat")


def test_first_match_wins_across_kinds():
    midi_path = "Женская одежда / Платья / Миди"
    assert mapping_of("glob: */Платья/* => dress", f"{midi_path} => midi-dress").map(midi_path) == id_of("dress")
    assert mapping_of(f"{midi_path} => midi-dress", "glob: */Платья/* => dress").map(midi_path) == id_of("midi-dress")
    assert mapping_of("re: платья => sundress", "glob: */Платья/* => dress").map(midi_path) == id_of("sundress")
    # A pattern above the exact line that does not match leaves the exact rule in charge.
    mapping = mapping_of("re: юбк => skirt", f"{midi_path} => midi-dress", "glob: * => womens-clothing")
    assert mapping.map(midi_path) == id_of("midi-dress")
    assert mapping.map("Женщинам / Юбки") == id_of("skirt")
    assert mapping.map("Что-то ещё") == id_of("womens-clothing")


def test_repeated_paths_give_the_same_answer():
    mapping = mapping_of("glob: */Платья/* => dress")
    answers = {mapping.map(["Женщинам", "Платья", f"Серия {i % 3}"]) for i in range(1000)}
    assert answers == {id_of("dress")}


def test_example_file_loads_and_maps():
    mapping = CategoryMapping.load(EXAMPLE_FILE)
    assert mapping.map("Женская одежда / Платья / Миди") == id_of("midi-dress")
    assert mapping.map("Женская одежда > Платья > Макси") == id_of("maxi-dress")
    assert mapping.map("Женская одежда / Платья") == id_of("dress")
    assert mapping.map("Распродажа / Юбки / Миди") == id_of("skirt")
    assert mapping.map("Мужчинам / Обувь / Кеды") == id_of("mens-sneakers")
    assert mapping.map("Женщинам / Обувь / Кроссовки") == id_of("womens-sneakers")
    assert mapping.map("Косметика / Помады") is None


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("Женская одежда / Платья midi-dress", "missing '=>'"),
        ("   => dress", "empty pattern"),
        ("glob:   => dress", "empty pattern"),
        ("re: => dress", "empty pattern"),
        (" / > => dress", "has no path segments"),
        ("re: платья( => dress", "bad regular expression 'платья\\(': missing \\)"),
        ("Платья => no-such-dress", "unknown rubricator category: no category named 'no-such-dress'"),
        ("Платья => 999999", "unknown rubricator category: no category with id 999999"),
        ("Платья =>   ", "missing rubricator category"),
        ("Миди => dress", "path 'миди' is already mapped on line 2"),
    ],
)
def test_bad_lines_name_the_file_the_line_and_the_reason(bad_line, reason):
    text = "# shop: example\nМиди => midi-dress\n" + bad_line + "\nМакси => maxi-dress\n"
    with pytest.raises(MappingError, match=reason) as caught:
        CategoryMapping.parse(text, load_rubricator(), source="shop.txt")
    assert caught.value.source == "shop.txt" and caught.value.line_number == 3
    assert str(caught.value).startswith("shop.txt:3: ")


def test_retired_target_is_refused(tmp_path):
    retired = Rubricator.from_document(
        {
            "next_id": 4,
            "categories": [
                {
                    "id": 1,
                    "name": "bags",
                    "title": "Bags",
                    "children": [
                        {"id": 2, "name": "tote-bag", "title": "Tote bag", "aliases": ["тоут"], "retired": True},
                        {"id": 3, "name": "shopper-bag", "title": "Shopper bag"},
                    ],
                },
            ],
        }
    )
    path = tmp_path / "shop.mapping.txt"
    for target in ("tote-bag", "2"):
        path.write_text(f"Сумки / Шоперы => shopper-bag\nСумки / Тоуты => {target}\n", "utf-8")
        with pytest.raises(MappingError, match="'tote-bag' \\(id 2\\) is retired") as caught:
            CategoryMapping.load(path, retired)
        assert str(caught.value).startswith(f"{path}:2: ")


def test_unmapped_report_counts_paths_in_canonical_form():
    report = UnmappedReport()
    for path in ["Косметика / Помады"] * 3 + ["косметика>помады", ["Дом", "Свечи"], "Дом / Свечи", "Игрушки"]:
        report.record(path)
    assert report.most_common() == [("Косметика / Помады", 4), ("Дом / Свечи", 2), ("Игрушки", 1)]
    assert report.most_common(1) == [("Косметика / Помады", 4)]
    assert report.total == 7 and len(report) == 3


def test_unmapped_report_renders_a_markdown_table():
    report = UnmappedReport()
    report.record("Дом / Свечи")
    report.record("Дом / Свечи")
    report.record("Подарки | Акции")
    assert report.to_markdown().splitlines() == [
        "| Shop category path | Offers |",
        "| --- | ---: |",
        "| Дом / Свечи | 2 |",
        "| Подарки &#124; Акции | 1 |",
    ]
    assert len(report.to_markdown(limit=1).splitlines()) == 3
    assert str(report) == report.to_markdown()


def test_mapping_with_report_counts_only_what_is_unmapped():
    mapping = mapping_of("glob: */Платья/* => dress")
    report = UnmappedReport()
    for path in ["Женщинам / Платья / Миди", "Женщинам / Юбки", "Женщинам / Платья / Макси", "Женщинам / Юбки"]:
        if mapping.map(path) is None:
            report.record(path)
    assert report.most_common() == [("Женщинам / Юбки", 2)]


# Matching shop names against the rubricator, and the Categorizer the indexer files offers with.


def test_rubricator_lookup_reads_dashes_underscores_and_apostrophes_loosely():
    rubricator = load_rubricator()
    assert rubricator.get("Mens T-Shirts").name == "mens-t-shirts"
    assert rubricator.get("MENS_T_SHIRTS").name == "mens-t-shirts"
    assert rubricator.get("Women’s Shoes").name == "womens-shoes"
    assert rubricator.get("платье рубашка") == rubricator.get("Платье-рубашка")


def test_shoes_names_no_category_without_a_gender():
    # Why a folder named "Shoes" was filed unmapped: not case (lookups fold it), but the tree has
    # women's shoes and men's shoes and no shoes of nobody's, so "shoes" names no node.
    rubricator = load_rubricator()
    assert "Shoes" not in rubricator and "shoes" not in rubricator
    assert rubricator.match("Shoes") is None
    assert rubricator.match("Shoes", gender="men").name == "mens-shoes"
    assert rubricator.match("SHOES", gender="women").name == "womens-shoes"
    assert rubricator.match("Обувь", gender="women").name == "womens-shoes"
    assert rubricator.match("Кроссовки", gender="men").name == "mens-sneakers"


def test_match_prefers_the_gendered_name_and_skips_retired_nodes():
    rubricator = load_rubricator()
    assert rubricator.match("Платья").name == "dress"
    assert rubricator.match("Платья", gender="men").name == "dress"  # nothing men's is called so: keep it
    assert rubricator.match("Пижама", gender="baby").name == "baby-pyjamas"
    assert rubricator.match("no such thing", gender="women") is None
    retired = Rubricator.from_document(
        {
            "next_id": 3,
            "categories": [
                {"id": 1, "name": "bags", "title": "Bags", "children": [{"id": 2, "name": "tote-bag", "title": "T"}]},
            ],
        }
    )
    assert retired.match("Tote Bag").id == 2
    retired = Rubricator.from_document(
        {
            "next_id": 3,
            "categories": [
                {
                    "id": 1,
                    "name": "bags",
                    "title": "Bags",
                    "children": [{"id": 2, "name": "tote-bag", "title": "T", "retired": True}],
                }
            ],
        }
    )
    assert retired.match("Tote Bag") is None and retired.get("tote-bag").retired


@pytest.mark.parametrize(
    ("text", "gender"),
    [
        ("Женский", "women"),
        ("female", "women"),
        ("Women's", "women"),
        ("  МУЖСКОЙ ", "men"),
        ("male", "men"),
        ("Унисекс", "unisex"),
        ("для всех", "unisex"),
        ("Для новорожденных", "baby"),
        ("newborn", "baby"),
        ("детский", None),
        ("M", None),
        ("", None),
        (None, None),
    ],
)
def test_gender_of(text, gender):
    assert gender_of(text) == gender


def test_categorizer_tries_the_mapping_first_then_the_paths_names():
    categorize = Categorizer(mapping_of("glob: */Платья/* => dress", "Обувь => womens-sneakers"))
    assert categorize("Женщинам / Платья / Миди") == id_of("dress")  # the rule, though "платья миди" is an alias
    assert categorize("Обувь") == id_of("womens-sneakers")
    assert categorize("Распродажа / Платья / Миди") == id_of("dress")
    assert categorize("Сумки / Платья") == id_of("dress")  # by name: the leaf first
    assert categorize("Женская одежда / Новинки") == id_of("womens-clothing")  # a segment higher up


def test_categorizer_by_names_alone():
    categorize = Categorizer()
    assert categorize("Женская одежда / Платья / Миди") == id_of("midi-dress")  # "платья миди"
    assert categorize("Женщинам > Обувь > Кроссовки") == id_of("womens-sneakers")  # gender from the path
    assert categorize("Мужская одежда / Джинсы") == id_of("mens-jeans")
    assert categorize("Men > Clothing > T-Shirts") == id_of("mens-t-shirts")
    assert categorize(["Shoes"], gender="male") == id_of("mens-shoes")  # gender from the offer
    assert categorize("Apparel & Accessories / Shoes", gender="women") == id_of("womens-shoes")
    assert categorize("Shoes") is None
    assert categorize("Косметика / Помады") is None
    assert categorize(None) is None and categorize(" / ") is None
    assert categorize.unmapped.most_common() == [("(no category)", 2), ("Shoes", 1), ("Косметика / Помады", 1)]


def test_categorizer_counts_unmapped_paths_most_frequent_first():
    categorize = Categorizer.load(Path(__file__).parents[2] / "indexer" / "mappings" / "clothing.txt")
    paths = ["dress", "Shoes", "SHOES ", "hat", "Hat", "hat", "Косметика", "t-shirt"]
    assert [categorize(path) for path in paths] == [
        id_of("dress"),
        id_of("mens-shoes"),
        id_of("mens-shoes"),
        None,
        None,
        None,
        None,
        id_of("mens-t-shirts"),
    ]
    assert categorize.unmapped.most_common() == [("hat", 3), ("Косметика", 1)]
    assert categorize.resolve("hat") is None and categorize.unmapped.total == 4  # resolve() counts nothing
    assert Categorizer.load(None).mapping is None
