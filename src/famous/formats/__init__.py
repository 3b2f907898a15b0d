"""Readers of model file formats that famous needs without their heavy libraries."""
