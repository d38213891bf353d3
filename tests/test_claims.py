"""The papers' relative claims: the Claim schema, the four papers' claims as written in the specs, and the
pair verdict (Welch's t-test, effect size, published gain) on the SYNTHETIC seed database."""
from __future__ import annotations

import pytest

from conftest import TOY_TABLE, write_toy
from fixtures_seeds import EXPECTED_PAIRS, write_seed_fixture, write_seed_specs
from repro.compare import Comparison, check_claims, claim_verdict, compare_paper, overall_verdict


def _cell(row: str, values: list[float], metric: str = "top1_acc", budget: str = "full") -> Comparison:
    mean = sum(values) / len(values) if values else None
    return Comparison(paper="p", table="t", section=None, row=row, column="c", metric=metric, printed="1",
                      published=1.0, ours=mean, ours_exact=mean, std=None, n=len(values), delta=None,
                      budget=budget if values else None, status="reproduced" if values else "pending", detail=None,
                      uncertain=None, reason=None, config_key=None, jobs=[], values=values)


@pytest.mark.parametrize("better, worse, metric, published, verdict", [
    ([80.0, 80.2, 80.1], [78.0, 78.2, 78.1], "top1_acc", 1.94, "holds"),  # +2.0 >= 1.94 - 0.5
    ([78.5, 78.7, 78.6], [78.0, 78.2, 78.1], "top1_acc", 1.94, "holds, smaller"),  # +0.5, significant
    ([78.0, 78.9, 77.6], [78.0, 78.2, 78.1], "top1_acc", 0.5, "not significant"),
    ([77.0, 77.2, 77.1], [78.0, 78.2, 78.1], "top1_acc", 0.5, "reversed"),
    ([22.0, 22.2, 22.1], [23.0, 23.2, 23.1], "top1_err", 0.25, "holds"),  # errors: lower is the claim's way
    ([24.0, 24.2, 24.1], [23.0, 23.2, 23.1], "top1_err", 0.25, "reversed"),
    ([79.0, 79.0], [78.0, 78.0], "top1_acc", 0.5, "holds"),  # no spread on either side: exact
])
def test_claim_verdict(better, worse, metric, published, verdict):
    got, note, st = claim_verdict(_cell("a", better, metric), _cell("b", worse, metric), published, 0.5)
    assert got == verdict, (note, st)


def test_claim_verdict_gain_p_and_cohens_d():
    from scipy import stats

    a, b = [80.0, 80.4, 80.2], [78.0, 78.6, 78.3]
    verdict, _, st = claim_verdict(_cell("a", a), _cell("b", b), 1.94, 0.5)
    assert st["gain"] == pytest.approx(1.9) and verdict == "holds"
    assert st["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    pooled = ((0.2 ** 2 + 0.3 ** 2) / 2) ** 0.5  # equal n: the mean of the two variances
    assert st["d"] == pytest.approx(1.9 / pooled)


@pytest.mark.parametrize("better, worse, why", [
    (None, _cell("b", [1.0, 2.0]), "not measured: no such cell"),
    (_cell("a", []), _cell("b", [1.0, 2.0]), "not measured: a"),
    (_cell("a", [1.0, 2.0], budget="smoke"), _cell("b", [1.0, 2.0]), "short budget: a (smoke)"),
    (_cell("a", [1.0]), _cell("b", [1.0, 2.0]), "n < 2: a (n=1)"),
])
def test_claim_pending_says_why(better, worse, why):
    verdict, note, _ = claim_verdict(better, worse, 1.0, 0.5)
    assert (verdict, note) == ("pending", why)


def test_overall_verdict_needs_every_pair():
    assert overall_verdict(["holds", "holds"]) == "holds"
    assert overall_verdict(["holds", "holds, smaller"]) == "holds, smaller"
    assert overall_verdict(["holds", "pending"]) == "pending"
    assert overall_verdict(["pending", "reversed"]) == "reversed"
    assert overall_verdict(["holds", "not significant"]) == "not significant"


def test_claim_schema_one_form_only(tmp_path):
    from repro.catalog import load_catalog
    from repro.specs import SpecError

    both = TOY_TABLE + ("claims:\n  - {text: t, column: Error, better: CRA-ResNet-56, worse: ResNet-56,\n"
                        "     pairs: [{better: CRA-ResNet-56, worse: ResNet-56}]}\n")
    with pytest.raises(SpecError, match="either better/worse"):
        load_catalog(write_toy(tmp_path / "a", table=both))
    unknown = TOY_TABLE + "claims:\n  - {text: t, column: Error, pairs: [{better: CRA-ResNet-56, worse: Nope}]}\n"
    with pytest.raises(SpecError, match="claims: unknown row 'Nope'"):
        load_catalog(write_toy(tmp_path / "b", table=unknown))


@pytest.fixture(scope="module")
def claims_of(tmp_path_factory):
    """The claim checks of one of the project's papers over an empty database (every cell pending)."""
    from repro.catalog import load_catalog
    from repro.db import Database

    catalog = load_catalog(None)
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('empty')}/empty.db")

    def checks(slug: str):
        paper = catalog.papers[slug]
        return check_claims(paper, compare_paper(paper, db))

    return checks


def test_se_r_claim_every_depth_at_most_1_94(claims_of):
    (claim,) = [c for c in claims_of("se-r") if c.table == "table3"]
    assert "SE-R-ResNet101 achieves an accuracy improvement of 1.94" in claim.text
    assert [(p.better, p.worse) for p in claim.pairs] == [("SE-R-ResNet34", "SE-ResNet34"),
                                                          ("SE-R-ResNet50", "SE-ResNet50"),
                                                          ("SE-R-ResNet101", "SE-ResNet101")]
    gains = [p.published_gain for p in claim.pairs]
    assert gains == [0.86, 1.74, 1.94]
    assert claim.gain_of == "max" and float(claim.published_gain) == max(gains)  # the text agrees with the table
    assert claim.verdict == "pending" and all(p.detail.startswith("not measured") for p in claim.pairs)


def test_cra_cmpe_se_csm_claims_cover_every_backbone(claims_of):
    cra = [c for c in claims_of("cra") if c.table == "table2" and len(c.pairs) > 1]
    assert len(cra) == 1 and [p.published_gain for p in cra[0].pairs] == [0.25, 0.68, -0.04, 0.22]
    cmpe = [c for c in claims_of("cmpe-se") if c.table == "table2"]
    assert [c.column for c in cmpe] == ["C10", "C100"] and all(len(c.pairs) == 6 for c in cmpe)
    assert cmpe[0].pairs[0].better == "CMPE-SE-WRN-22-10 (Ours) / 1×1 pair-view"
    assert cmpe[0].pairs[0].worse == "SE-WRN-22-10"
    assert [p.published_gain for p in cmpe[1].pairs] == [0.66, 0.7, 0.36, 0.34, 0.5, 0.58]
    csm = [c for c in claims_of("csm") if c.table == "table2"]
    assert len(csm) == 1 and "CSM is better than SENet" in csm[0].text
    assert [p.worse for p in csm[0].pairs] == ["ResNet-18+SE", "ResNet-34+SE", "ResNet-50+SE",
                                               "WideResNet18(widen=1.5)+SE"]


def test_claim_verdicts_on_the_seed_database(tmp_path):
    from repro.catalog import load_catalog
    from repro.db import Database

    specs = write_seed_specs(tmp_path / "specs")
    url = f"sqlite:///{tmp_path}/synthetic_seeds.db"
    write_seed_fixture(url, specs)
    catalog = load_catalog(specs)
    db = Database(url, create=False)
    checks = [ch for slug in ("se-r", "toy") for ch in
              check_claims(catalog.papers[slug], compare_paper(catalog.papers[slug], db))]
    pairs = {(ch.table, p.better): p for ch in checks for p in ch.pairs}
    assert {k: p.verdict for k, p in pairs.items()} == EXPECTED_PAIRS
    assert pairs[("table3", "SE-R-ResNet101")].detail == "diverged: SE-R-ResNet101"
    smaller = pairs[("table3", "SE-R-ResNet50")]
    assert smaller.gain == pytest.approx(0.3) and smaller.published_gain == 1.74 and smaller.p < 0.05
    reversed_ = pairs[("table1", "CRA-ResNet-56")]
    assert reversed_.gain == pytest.approx(-0.9) and reversed_.d < 0
    assert [ch.verdict for ch in checks] == ["pending", "reversed", "not significant"]
