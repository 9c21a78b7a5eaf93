"""Entity resolution of person mentions (issue 46): the scorer on hand-computed clusterings,
names as people write them, the resolver's rules (keep apart when unsure), and the measurement
on ../shared/corpora/resolution/ with the members' contact records as anchors."""

import pytest

from yoyo_assets.resolution.evaluation import load_anchors, resolve_labelled, undecidable
from yoyo_assets.resolution.names import parse_person, same_given_name
from yoyo_assets.resolution.resolver import Mention, Resolver, anchor_of_contact, attach_places
from yoyo_assets.resolution.scoring import score_clusters


def test_the_scorer_on_hand_computed_clusterings():
    gold = ["a", "a", "a", "b", "b"]
    perfect = score_clusters(["x", "x", "x", "y", "y"], gold)
    assert (perfect.bcubed_precision, perfect.bcubed_recall, perfect.bcubed_f1) == (1, 1, 1)
    one = score_clusters(["x"] * 5, gold)  # all merged: precision (3*3/5 + 2*2/5) / 5
    assert one.bcubed_recall == 1 and one.bcubed_precision == pytest.approx(13 / 25)
    assert one.pairwise_precision == pytest.approx(4 / 10) and one.pairwise_recall == 1
    apart = score_clusters(["1", "2", "3", "4", "5"], gold)
    assert apart.bcubed_precision == 1 and apart.bcubed_recall == pytest.approx(
        (3 * (1 / 3) + 2 * (1 / 2)) / 5)
    assert apart.pairwise_recall == 0 and apart.pairwise_precision == 1
    with pytest.raises(ValueError):
        score_clusters(["x"], gold)


def test_names_as_people_write_them():
    johnson = parse_person("Henry C. Johnson, Jr.")
    assert (johnson.given, johnson.middle, johnson.surnames) == ("henry", ("c",), ("johnson",))
    assert parse_person("Sen. Rounds's") == parse_person("Senator Rounds")
    assert parse_person("Congresswoman Lee").role == "house" == parse_person("Rep. Lee").role
    assert parse_person("Pablo José Hernández").surnames == ("hernandez",)
    assert same_given_name("maggie", "margaret") and same_given_name("bernie", "bernard")
    assert same_given_name("j", "jerrold") and same_given_name("sara", "sarah")
    assert not same_given_name("mary", "max") and not same_given_name("mark", "mary")


def contact(bioguide, name, first, last, title, represents, committees=()):
    return anchor_of_contact({"id": f"bioguide:{bioguide}", "name": name, "first_name": first,
                              "last_name": last, "title": title, "represents": represents,
                              "committees": list(committees)})


SCOTTS = [contact("S001189", "Austin Scott", "Austin", "Scott",
                  "U.S. Representative for Georgia's 8th congressional district", "Georgia",
                  ["House Committee on Armed Services"]),
          contact("S000185", "Robert C. Scott", "Robert", "Scott",
                  "U.S. Representative for Virginia's 3rd congressional district", "Virginia",
                  ["House Committee on Education and Workforce (Ranking Member)"]),
          contact("S001184", "Tim Scott", "Tim", "Scott", "U.S. Senator for South Carolina",
                  "South Carolina", ["Senate Committee on Finance"]),
          contact("B001303", "Lisa Blunt Rochester", "Lisa", "Blunt Rochester",
                  "U.S. Senator for Delaware", "Delaware")]


@pytest.mark.parametrize("text,name,places,entity,reason", [
    ("Sen. Scott spoke.", "Sen. Scott", (), "bioguide:S001184", "name"),
    ("Robert C. Scott called.", "Robert C. Scott", (), "bioguide:S000185", "name"),
    ("Bobby Scott called.", "Bobby Scott", (), "bioguide:S000185", "name"),
    ("Rep. Scott of Georgia.", "Rep. Scott", ("Georgia",), "bioguide:S001189", "name+place"),
    ("Rep. Scott asked for the House Committee on Armed Services memo.", "Rep. Scott", (),
     "bioguide:S001189", "group"),
    ("Rep. Scott called.", "Rep. Scott", (), "mention:d:rep scott", "ambiguous"),
    ("Rep. Scott (Ohio) called.", "Rep. Scott", ("Ohio",), "mention:d:rep scott", "no anchor"),
    ("Tim Scott of Ohio called.", "Tim Scott", ("Ohio",), "person:tim scott", "no anchor"),
    ("Sen. Blunt Rochester called.", "Sen. Blunt Rochester", (), "bioguide:B001303", "name"),
    ("Rep. Blunt Rochester called.", "Rep. Blunt Rochester", (), "mention:d:rep blunt rochester",
     "no anchor"),
    ("Sen. Smith called.", "Sen. Smith", (), "mention:d:sen smith", "no anchor"),
    ("Ada Smith called.", "Ada Smith", (), "person:ada smith", "no anchor"),
])
def test_a_mention_links_to_the_one_anchor_that_fits_or_stays_apart(text, name, places, entity,
                                                                    reason):
    [resolution] = Resolver(SCOTTS).resolve_document("d", [Mention("d", name, places)], text)
    assert (resolution.entity, resolution.reason) == (entity, reason)
    assert resolution.anchored == entity.startswith("bioguide:")


def test_a_weaker_link_to_an_anchor_another_form_claims_is_undone():
    text = ("Rep. Scott and Congressman Scott spoke at the House Committee on Armed Services "
            "hearing. Follow up with Rep. Scott's office in Georgia.")
    places = attach_places(text, ["Rep. Scott", "Congressman Scott"], ["Georgia"])
    assert places == {"Rep. Scott": ("Georgia",)}
    resolved = Resolver(SCOTTS).resolve_document(
        "d", [Mention("d", n, places.get(n, ())) for n in ("Rep. Scott", "Congressman Scott")],
        text)
    assert [(r.entity, r.reason) for r in resolved] == [
        ("bioguide:S001189", "name+place"), ("mention:d:congressman scott", "conflict")]


def test_records_without_an_identifier_make_no_anchor():
    assert anchor_of_contact({"name": "Ada Lovelace", "last_name": "Lovelace"}) is None
    assert anchor_of_contact({"id": "x", "name": "Ada", "last_name": 7}) is None
    # A record with a full name only (a CRM's): the surname read from the name.
    nadia = anchor_of_contact({"id": "crm:1", "name": "Nadia Petrova", "title": "Head of IT"})
    assert (nadia.surnames, nadia.given_names, nadia.role) == (("petrova",), ("nadia",), None)


def test_on_the_labelled_notes_the_resolver_meets_its_targets(corpora):
    """Gold mentions of `resolution/`, the members' contact records as anchors: B-cubed F1
    >= 0.95 at precision >= 0.97 (issue 46), far above today's key and the surname alone."""
    report = resolve_labelled(corpora / "resolution", load_anchors(corpora / "contacts"))
    resolver = report.scores["resolver"]
    assert resolver.mentions == 600
    assert resolver.bcubed_precision >= 0.97 and resolver.bcubed_f1 >= 0.95, resolver
    for baseline in ("today's key (type + case-folded name)", "surname only"):
        assert report.scores[baseline].bcubed_f1 < resolver.bcubed_f1 - 0.15
    # The Fellegi-Sunter peer (splink) on the same blocks: as precise, and behind on recall
    # (docs/benchmarks.md says why).
    peer = report.scores["splink (Fellegi-Sunter)"]
    assert peer.bcubed_precision >= 0.97 and peer.bcubed_f1 < resolver.bcubed_f1, peer
    # What it links, it links to the member the label names.
    linked = [(r, g) for r, g in zip(report.resolutions, report.gold) if r.anchored]
    assert len(linked) >= 570 and all(r.entity == f"bioguide:{g}" for r, g in linked)
    # Kept apart because several members fit (docs/benchmarks.md lists them): short forms only.
    kept_apart = undecidable(report)
    assert 0 < len(kept_apart) <= 20
    assert all(parse_person(r.mention.name).given is None for r in kept_apart)
