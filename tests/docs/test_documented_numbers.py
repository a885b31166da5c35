"""Tables in README and docs match the JSON the command they name writes.

`python examples/check_trained_vae.py` writes docs/figures/check_trained_vae.json;
README's guide table (Monte Carlo gap split) and docs/posterior-checks.md's table
(quadrature gap split) must quote its means to the printed precision.
"""

import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JSON = ROOT / "docs" / "figures" / "check_trained_vae.json"
ROWS = {
    "diagonal Gaussian": "diagonal_normal",
    "full covariance": "full_covariance",
    "flow (2 IAF layers)": "flow",
}


def _rows(text: str, header_start: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _close(cell: str, value: float) -> bool:
    digits = len(cell.split(".")[1]) if "." in cell else 0
    return abs(float(cell.replace("−", "-")) - value) <= 0.5 * 10 ** -digits + 1e-9


@pytest.fixture(scope="module")
def data() -> dict:
    return json.loads(JSON.read_text())


def test_readme_guide_table_matches_json(data: dict) -> None:
    rows = _rows((ROOT / "README.md").read_text(), "| guide | gap = log p(x)")
    assert set(rows) == set(ROWS)
    for name, key in ROWS.items():
        s = data[key]["summary"]
        expected = [s["mean_gap"], s["mean_kl"], s["mean_approximation_gap"],
                    s["mean_amortization_gap"], s["max_khat"]]
        for cell, value in zip(rows[name], expected, strict=True):
            assert _close(cell, value), (name, cell, value)


def test_posterior_checks_table_matches_json(data: dict) -> None:
    text = (ROOT / "docs" / "posterior-checks.md").read_text()
    rows = _rows(text, "| guide | test ELBO (all)")
    assert set(rows) == set(ROWS)
    for name, key in ROWS.items():
        d, s, a = data[key], data[key]["summary"], data[key]["amortization"]
        cells = rows[name]
        assert _close(cells[0], d["test_elbo"])
        assert _close(cells[1], s["mean_log_px"])
        assert _close(cells[2], s["mean_elbo"])
        assert _close(cells[3], s["mean_gap"])
        assert _close(cells[4], s["mean_kl"])
        assert _close(cells[5], s["max_abs_residual"])
        mean_k, max_k = cells[6].split(" / ")
        assert _close(mean_k, s["mean_khat"]) and _close(max_k, s["max_khat"])
        assert _close(cells[7], statistics.mean(a["approximation_gap_exact"]))
        assert _close(cells[8], statistics.mean(a["amortization_gap_exact"]))


def test_readme_m2_table_matches_its_json() -> None:
    """README's semi-supervised table quotes docs/figures/semi_supervised_digits.json,
    written by `python examples/semi_supervised_digits.py`."""
    data = json.loads((ROOT / "docs" / "figures" / "semi_supervised_digits.json").read_text())
    rows = _rows((ROOT / "README.md").read_text(), "| model | test accuracy | ECE")
    assert set(rows) == set(data["rows"])
    for name, cells in rows.items():
        v = data["rows"][name]
        for cell, key in zip(cells[:2], ("accuracy", "ece"), strict=True):
            assert (cell == "–") == (v[key] is None) and (v[key] is None or _close(cell, v[key]))
        if v["log_px"] is None:
            assert cells[2] == "–"
        else:
            mean, se = cells[2].split(" ± ")
            assert _close(mean, v["log_px"]) and _close(se, v["log_px_se"])


def test_posterior_checks_mixture_table_matches_its_json() -> None:
    """docs/posterior-checks.md's discrete-latent table quotes docs/figures/check_mixture.json,
    the report of `pyrovae check mixture`."""
    data = json.loads((ROOT / "docs" / "figures" / "check_mixture.json").read_text())
    text = (ROOT / "docs" / "posterior-checks.md").read_text().replace("\\|", "/")
    rows = _rows(text, "| guide | q(y/x) | q(z/x, y) | mean gap")
    assert set(rows) == {f"`{v}`" for v in data["guides"]}
    for name, cells in rows.items():
        g = data["guides"][name.strip("`")]
        ident, cal = g["identity"], g["sbc"]["calibration"]
        assert _close(cells[2], statistics.mean(ident["gap"]))
        assert _close(cells[3], statistics.mean(ident["kl_y"]))
        ece, rest = cells[4].split(" (")
        threshold, verdict = rest.split(") ")
        assert _close(ece, cal["ece"]) and _close(threshold, cal["threshold"])
        assert verdict == ("pass" if cal["passed"] else "fail")
        assert cells[5] == ("pass" if g["sbc"]["ranks"]["passed"] else "fail")
    s = data["summary"]
    assert s["ais_max_abs_error"] < 0.016 and s["iwae_max_abs_error"] < 0.020
    assert s["identity_ok"] and s["traceenum_agrees"] and s["sbc_passed"] == "exact"


def test_readme_hierarchical_table_matches_its_json() -> None:
    """README's two-layers-against-one table quotes docs/figures/hierarchical_vs_single.json,
    written by `python examples/hierarchical_vs_single.py`."""
    data = json.loads((ROOT / "docs" / "figures" / "hierarchical_vs_single.json").read_text())
    rows = _rows((ROOT / "README.md").read_text(), "| model | parameters | held-out ELBO")
    names = {"one layer (z: 48)": "one layer (z: 48)",
             "two layers (z₁: 32, z₂: 16)": "two layers (z1: 32, z2: 16)"}
    assert set(rows) == set(names)
    for name, cells in rows.items():
        v = data["models"][names[name]]
        assert int(cells[0].replace(",", "")) == v["parameters"]
        assert _close(cells[1], v["elbo"]) and _close(cells[2], v["iwae"])
        ais, rest = cells[3].split(" ± ")
        se, width = rest.split(" [")
        assert _close(ais, v["ais"]) and _close(se, v["ais_stderr"])
        assert _close(width.rstrip("]"), v["bdmc_width"])
        units = dict(part.split(": ") for part in cells[4].split(", "))
        sub = {"z": "z", "z₁": "z1", "z₂": "z2"}
        assert {sub[k]: int(u.split("/")[0]) for k, u in units.items()} == v["active_units"]
        assert {sub[k]: int(u.split("/")[1]) for k, u in units.items()} == v["sites"]


def test_readme_mnist_m2_table_matches_its_json() -> None:
    """README's MNIST label sweep quotes docs/figures/semi_supervised_mnist.json, written by
    `python examples/semi_supervised_mnist.py`, beside the published accuracies it holds."""
    data = json.loads((ROOT / "docs" / "figures" / "semi_supervised_mnist.json").read_text())
    rows = {k.replace(",", ""): v for k, v in
            _rows((ROOT / "README.md").read_text(), "| labels | epochs | test accuracy").items()}
    by_count = {str(r["labels"]): r for r in data["rows"]}
    assert set(rows) == set(by_count)
    for count, cells in rows.items():
        r = by_count[count]
        assert int(cells[0]) == r["epochs"]
        assert _close(cells[1], r["accuracy"]) and _close(cells[2], r["ece"])
        mean, se = cells[3].split(" ± ")
        assert _close(mean, r["log_px"]) and _close(se, r["log_px_se"])
        for cell, key in zip(cells[4:6], ("pyro_tutorial", "kingma_m2"), strict=True):
            assert (cell == "–") == (r[key] is None) and (r[key] is None or _close(cell, r[key]))


def test_readme_mnist_table_matches_bench_mnist_json() -> None:
    """README's full-MNIST table quotes docs/figures/bench_mnist.json (bench_mnist.py)."""
    report = json.loads((ROOT / "docs" / "figures" / "bench_mnist.json").read_text())
    rows = _rows((ROOT / "README.md").read_text(), "| model | passes | test ELBO | IWAE-5000")
    names = {"VAE (1 layer)": "vae", "IWAE k=5 (1 layer)": "iwae5",
             "IWAE k=50 (1 layer)": "iwae50", "VAE (2 layers)": "hvae",
             "IWAE k=5 (2 layers)": "hiwae5", "IWAE k=50 (2 layers)": "hiwae50",
             "pythae `VAE` (1 layer, peer)": "pythae"}
    assert set(rows) == set(names)
    for label, key in names.items():
        st = report["models"][key]
        cells = rows[label]
        if st.get("status") == "not installed":  # the peer's row where pythae was absent
            assert set(cells) == {"—"}, (label, cells)
            continue
        f = st["final"]
        assert int(cells[0]) == st["epochs"]
        for cell, value in ((cells[1], f["iwae"]["test_elbo"]),
                            (cells[2], f["iwae"]["test_iwae"]),
                            (cells[3].rstrip("%"), 100 * f["iwae"]["khat_share"]),
                            (cells[4], f["iwae_ais"]["test_iwae"]),
                            (cells[6], f["gaps"]["approximation_gap"]),
                            (cells[7], f["gaps"]["amortization_gap"]),
                            (cells[9], st["train_wall_s"]), (cells[10], st["train_cpu_s"])):
            assert _close(cell, value), (label, cell, value)
        ais, rest = cells[5].split(" ± ")
        se, width = rest.rstrip("]").split(" [")
        assert _close(ais, f["ais"]["log_px"]) and _close(se, f["ais"]["stderr"])
        assert _close(width, f["ais"]["width"])
        assert int(cells[8]) == f["active_units"]["total"]
        pub = st["published"]
        assert cells[11] == "—" if pub is None else _close(cells[11], pub)
