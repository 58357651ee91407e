"""The papers' tables in one command: declarative suites, a resumable runner, paper-layout reports."""

from anyrestore.benchmark.suite import Suite, SuiteError, TestSet, load_suite, suite_names, suite_titles

__all__ = ["Suite", "SuiteError", "TestSet", "load_suite", "suite_names", "suite_titles"]
