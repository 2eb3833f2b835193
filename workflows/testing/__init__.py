"""Test helpers that ship with pqdflow: a fake VASP executable on real reference outputs."""
