import csv, collections
from sqlalchemy import text
from address_data import SEED, address_base  # noqa
from gridserver.address.demo_data import DEPARTMENTS, write_department_table
from gridserver.address.importer import import_file
def test_dbg(engine, address_base):
    source = "公安户籍"
    path, truth, mapping = write_department_table(address_base["base"], source, address_base["dir"], 1500, SEED)
    s = import_file(engine, path, source=source, mapping=mapping)
    t = {r["id"]: r for r in csv.DictReader(open(truth, encoding="utf-8"))}
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT d.source_key, d.raw_text, d.status, d.method, d.reason, d.parsed, s.match_key FROM dept_records d LEFT JOIN std_addresses s ON s.id = d.address_id WHERE d.source = :s"), {"s": source}).all()
    fp = collections.Counter(); fn = collections.Counter()
    for r in rows:
        tr = t[r.source_key]
        if r.status == "matched" and r.match_key != tr["truth"]:
            fp[tr["quirks"]] += 1
            print("FP", r.raw_text, r.method, r.match_key, "truth", tr["truth"], tr["quirks"])
        elif r.status != "matched" and tr["truth"] not in ("REJECT",) and not tr["truth"].startswith("NEW"):
            fn[(r.status, r.method, tr["quirks"])] += 1
            print("FN", r.raw_text, r.status, r.method, r.reason, r.parsed, "truth", tr["truth"], tr["quirks"])
    print(fp); print(fn)
