"""CSV and other delimited text: declarative mappings (``format: csv``) and the reader.

``dialect`` turns bytes into rows, ``mapping`` compiles mapping files, ``apply`` maps rows
to canonical documents, ``reader`` is what the pipeline calls. See docs/csv-mappings.md.
"""

from gateway.formats.csv.mapping import CsvMapping, compile_csv_mapping
from gateway.formats.csv.reader import CsvPayload, CsvReader

__all__ = ["CsvMapping", "CsvPayload", "CsvReader", "compile_csv_mapping"]
