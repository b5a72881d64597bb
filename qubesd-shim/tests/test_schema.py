# SPDX-License-Identifier: GPL-2.0-or-later
"""The shim's protocol tables equal api/schema.json, generated from the Go
types, so neither side can drift."""

import ast
import glob
import os
import unittest

from qubes_btrfs_vdo import client
from tests import support, test_golden


class TestSchema(unittest.TestCase):

    def setUp(self):
        self.schema = support.load_schema(self)

    def test_protocol(self):
        self.assertEqual(self.schema["protocol"], client.PROTOCOL_VERSION)

    def test_ops(self):
        # The shim knows every op but the CLI's administration ones, each
        # exactly as the schema defines it.
        want = {
            op: {"args": args, "result": result}
            for op, (args, result) in client.OPS.items()
        }
        shim_ops = {
            op: spec for op, spec in self.schema["ops"].items()
            if op in client.OPS
        }
        self.assertEqual(shim_ops, want)
        self.assertLessEqual(
            set(self.schema["ops"]) - set(client.OPS),
            test_golden.NOT_SENT_BY_SHIM,
        )

    def test_types(self):
        shim_types = {
            name: fields for name, fields in self.schema["types"].items()
            if name in client.TYPES
        }
        self.assertEqual(shim_types, client.TYPES)

    def test_codes(self):
        self.assertEqual(set(self.schema["codes"]), set(client.CODE_HINTS))

    def test_every_op_has_golden_files(self):
        self.assertEqual(set(support.golden_ops()), set(self.schema["ops"]))

    def test_every_op_has_a_shim_caller(self):
        ops = set(self.schema["ops"]) - test_golden.NOT_SENT_BY_SHIM
        # Driven end to end by the golden tests...
        self.assertEqual(ops, set(test_golden.DRIVERS))
        # ...and named as a literal in the package (not only in tests).
        literals = set()
        package = os.path.dirname(client.__file__)
        for path in glob.glob(os.path.join(package, "*.py")):
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
            literals |= {
                node.value for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
            }
        self.assertEqual(ops - literals, set())


class TestGoldenFilesAgainstTables(unittest.TestCase):
    """Runs even before schema.json exists: the golden files fit the
    shim's own copy of the types."""

    def test_golden_requests_fit(self):
        for op in support.golden_ops():
            if op not in client.OPS:
                continue  # the CLI's ops: checked by the Go tests
            request = support.golden(op + ".request")
            args_type, result_type = client.OPS[op]
            self.assertEqual(support.schema_problems(
                request["args"], args_type, client.TYPES), [], op)
            result = support.golden(op + ".response")["result"]
            self.assertEqual(support.schema_problems(
                result, result_type, client.TYPES, "result"), [], op)
