#!/usr/bin/env python3
"""Turns the OpenAPI block of each seed endpoint document (Markdown with a ```yaml block) into JSON, which the
OpenAPI comparison test reads. Run: python3 spec/seed/extract.py /path/to/spec/*.md"""
import json, os, re, sys
import yaml

here = os.path.dirname(os.path.abspath(__file__))
for path in sys.argv[1:]:
    text = open(path).read()
    block = re.search(r"^````yaml[^\n]*\n(.*?)^````", text, re.S | re.M).group(1)
    doc = yaml.safe_load(block)
    name = os.path.splitext(os.path.basename(path))[0] + ".json"
    with open(os.path.join(here, name), "w") as out:
        json.dump(doc, out, indent=1, sort_keys=True, default=str)
        out.write("\n")
