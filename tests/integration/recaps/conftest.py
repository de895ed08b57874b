"""The recap fixtures of the unit tests, for the job's end-to-end tests."""

from tests.unit.recaps.conftest import YEAR, brand, store  # noqa: F401
