"""Thin routes: parse, call one function, shape the answer."""
