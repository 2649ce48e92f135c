"""Runs SQL on a current ClickHouse engine, in-process (PyPI `chdb-core`), for the tests
that check reftrack's ClickHouse schema and queries beyond the local server's 18.16.

    python chdb_run.py SPEC

SPEC is a JSON file: {"statements": [sql, ...], "queries": {name: sql, ...}}. The
statements run in order in a fresh session (any error stops the run, exit 1, with the
statement); then each query, whose rows are read as JSONEachRow. Prints one JSON object:
{"version": the engine's version, "results": {name: [row, ...]}}.
"""

import json
import sys
import tempfile

from chdb import session


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    with tempfile.TemporaryDirectory() as folder:
        s = session.Session(folder)
        for statement in spec["statements"]:
            try:
                s.query(statement)
            except Exception as err:
                sys.exit(f"statement failed on ClickHouse {version(s)}:\n{statement}\n{err}")
        results = {}
        for name, query in spec["queries"].items():
            try:
                out = str(s.query(query, "JSONEachRow"))
            except Exception as err:
                sys.exit(f"query {name} failed on ClickHouse {version(s)}:\n{query}\n{err}")
            results[name] = [json.loads(line) for line in out.splitlines() if line.strip()]
        print(json.dumps({"version": version(s), "results": results}))


def version(s):
    return str(s.query("SELECT version()", "TabSeparated")).strip()


if __name__ == "__main__":
    main()
