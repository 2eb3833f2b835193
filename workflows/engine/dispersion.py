"""Grimme D3(BJ) dispersion on top of any ASE calculator (the one place it is added).

The ML backends (and the mock) get D3(BJ) from ``dftd3`` (simple-dftd3, the DFT-D3
authors' library; its wheel carries the compiled library and reference C6 data, nothing
is downloaded) as an ASE ``SumCalculator`` of the base calculator and the correction.
Damping: the PBE D3(BJ) parameters of Grimme, Ehrlich and Goerigk, J. Comput. Chem. 32,
1456 (2011): s6 = 1, a1 = 0.4289, s8 = 0.7875, a2 = 4.4407 bohr, two-body
only (s9 = 0), as VASP's IVDW = 12. CHGNet is fitted to PBE(+U) data, hence PBE damping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ase.calculators.calculator import Calculator
from ase.calculators.mixing import SumCalculator

from pqdflow.errors import BackendNotInstalledError, InputError

__all__ = [
    "D3BJ_PBE",
    "DISPERSION_MODES",
    "d3bj_calculator",
    "dispersion_record",
    "with_dispersion",
]

#: Dispersion settings a calculation may carry (``CalcSpec.meta["dispersion"]``).
DISPERSION_MODES: tuple[str, ...] = ("none", "d3bj")
#: PBE D3(BJ) damping parameters (Grimme et al. 2011; a2 in bohr), two-body only.
D3BJ_PBE: dict[str, float] = {"s6": 1.0, "a1": 0.4289, "s8": 0.7875, "a2": 4.4407, "s9": 0.0}


def dispersion_record(mode: str) -> dict[str, Any]:
    """Return what a result records about its dispersion correction (JSON-ready).

    ``{"dispersion": "none"}``, or ``{"dispersion": "D3(BJ)", "functional": "PBE",
    "damping": {...}, "code": "dftd3 <version>"}``.
    """
    _check(mode)
    if mode == "none":
        return {"dispersion": "none"}
    return {
        "dispersion": "D3(BJ)",
        "functional": "PBE",
        "damping": dict(D3BJ_PBE),
        "code": f"dftd3 {_version()}",
    }


def _check(mode: str) -> None:
    if mode not in DISPERSION_MODES:
        raise InputError(f"dispersion = {mode!r}; allowed: {', '.join(DISPERSION_MODES)}")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dftd3")
    except Exception:
        return "not installed"


def d3bj_calculator() -> Calculator:
    """Return a D3(BJ) calculator with the PBE damping of :data:`D3BJ_PBE`.

    Raises
    ------
    BackendNotInstalledError
        When ``dftd3`` is not installed (``pip install 'pqdflow[d3]'``), naming the way
        out (``inputs.dispersion: none``).
    """
    try:
        from dftd3.ase import DFTD3
    except ImportError as exc:
        raise BackendNotInstalledError(
            "D3(BJ) dispersion needs the dftd3 package: pip install 'pqdflow[d3]' "
            "(or set inputs.dispersion: none in the study)"
        ) from exc
    calc: Calculator = DFTD3(method="PBE", damping="d3bj", params_tweaks=dict(D3BJ_PBE))
    return calc


def with_dispersion(factory: Callable[[], Calculator], mode: str) -> Callable[[], Calculator]:
    """Return ``factory`` itself (``"none"``) or a factory of base + D3(BJ) calculators.

    Parameters
    ----------
    factory
        Returns a new base calculator per call.
    mode
        ``"none"`` or ``"d3bj"``.
    """
    _check(mode)
    if mode == "none":
        return factory
    d3bj_calculator()  # fail now, not at the first step, when dftd3 is missing

    def summed() -> Calculator:
        calc: Calculator = SumCalculator([factory(), d3bj_calculator()])  # type: ignore[assignment]
        return calc

    return summed
