#!/usr/bin/env python3
"""Drive a running connect-usage sandbox with Connect's official Python client.

This checks that a real Connect client works against the sandbox unchanged: it filters,
counts and pages collections, creates usage files, uploads a workbook, waits for processing,
submits, accepts and rejects, and reads the error bodies, all through
`connect-openapi-client` (PyPI) as a vendor would write it.

Usage:
    python3 -m venv /tmp/cu-venv
    /tmp/cu-venv/bin/pip install connect-openapi-client openpyxl
    cargo run --release -- sandbox --listen 127.0.0.1:8080 &
    /tmp/cu-venv/bin/python scripts/python_client_check.py http://127.0.0.1:8080

The sandbox's /sandbox/info tells the script the API URL and the keys. Exit status: 0 when
every check passed, 1 when one failed, 2 when the script cannot run.
"""
import io
import json
import sys
import time
import urllib.request

try:
    import openpyxl
    from connect.client import ClientError, ConnectClient, R
except ImportError as exc:  # pragma: no cover
    print(f"missing package: {exc.name} (pip install connect-openapi-client openpyxl)")
    sys.exit(2)

FAILED = []


def check(ok, what, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{'' if ok else ' -- ' + str(detail)}", flush=True)
    if not ok:
        FAILED.append(what)
    return ok


def expect_error(call, status, code, what):
    try:
        call()
    except ClientError as e:
        return check(e.status_code == status and e.error_code == code, what,
                     f"got {e.status_code} {e.error_code} {e.errors}")
    return check(False, what, "no error raised")


def workbook(rows):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "records"
    sheet.append(["record_id", "item_search_criteria", "item_search_value", "quantity",
                  "start_time_utc", "end_time_utc", "asset_search_criteria", "asset_search_value"])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    origin = sys.argv[1].rstrip("/")
    with urllib.request.urlopen(f"{origin}/sandbox/info") as resp:
        info = json.load(resp)
    keys = {k["role"]: k["key"] for k in reversed(info["keys"])}
    api = info["api_url"]
    vendor = ConnectClient(keys["vendor"], endpoint=api, max_retries=0)
    provider = ConnectClient(keys["provider"], endpoint=api, max_retries=0)
    usage_v = vendor.ns("usage")
    usage_p = provider.ns("usage")

    print("authentication")
    bad = ConnectClient("ApiKey SU-000-000-000:nope", endpoint=api, max_retries=0)
    expect_error(lambda: bad.contracts.all().count(), 401, "AUTH_001", "an unknown key gets 401 AUTH_001")

    print("contracts, assets, products")
    active = R().type.oneof(["distribution"]) & R().status.oneof(["active"])
    contracts = list(vendor.contracts.filter(active))
    check(len(contracts) == vendor.contracts.filter(active).count() > 0,
          "filter + count agree on active distribution contracts", len(contracts))
    check(all(c["status"] == "active" and c["type"] == "distribution" for c in contracts),
          "the filter holds")
    check(vendor.contracts.filter(R().status.eq("terminated")).count() >= 1,
          "terminated contracts exist and are filtered out above")
    qt_target = None
    for contract in contracts:
        assets_rs = vendor.assets.filter(R().contract.id.eq(contract["id"]), R().status.eq("active"))
        by_product = {}
        for asset in assets_rs:
            by_product.setdefault(asset["product"]["id"], []).append(asset)
        for product_id, assets in by_product.items():
            product = vendor.products[product_id].get()
            if ((product.get("capabilities") or {}).get("ppu") or {}).get("schema") == "QT" and len(assets) >= 3:
                qt_target = (contract, product, assets)
                break
        if qt_target:
            break
    if not check(qt_target is not None, "a QT product with active assets under an active contract"):
        return 1
    contract, product, assets = qt_target
    paged = list(vendor.assets.filter(R().contract.id.eq(contract["id"])).limit(2))
    total = vendor.assets.filter(R().contract.id.eq(contract["id"])).count()
    check(len(paged) == total and len({a["id"] for a in paged}) == total,
          "paging by 2 returns every asset once", f"{len(paged)} of {total}")
    check(all("items" not in a for a in vendor.assets.filter(R().contract.id.eq(contract["id"])).select("-items").limit(5)),
          "select(-items) removes items")
    items = [i for i in vendor.products[product["id"]].items.all() if i["type"].lower() == "ppu"]
    integer_item = next(i for i in items if i["precision"] == "integer")

    def rows(prefix, count):
        return [[f"{prefix}-{n}", "item.mpn", integer_item["mpn"], n + 1, "2024-04-01 00:00:00",
                 "2024-04-30 23:59:59", "asset.id", assets[n % len(assets)]["id"]] for n in range(count)]

    def new_file(external_id):
        return usage_v.files.create({
            "name": "April 2024", "description": "python client check",
            "period": {"from": "2024-04-01", "to": "2024-04-30"},
            "product": {"id": product["id"]}, "contract": {"id": contract["id"]},
            "external_id": external_id,
        })

    def upload_and_wait(file_id, data):
        usage_v.files[file_id].action("upload").post(files={"usage_file": ("usage.xlsx", data)})
        for _ in range(100):
            status = usage_v.files[file_id].get()["status"]
            if status in ("ready", "invalid"):
                return status
            time.sleep(0.1)
        return status

    print("usage file: create, upload, submit, accept, close")
    suffix = str(int(time.time() * 1000))
    f1 = new_file(f"py-accept-{suffix}")
    check(f1["status"] == "draft" and f1["id"].startswith("UF-"), "create gives a draft UF- file", f1)
    check(usage_v.files.filter(external_id=f"py-accept-{suffix}").count() == 1, "found by external_id")
    check(upload_and_wait(f1["id"], workbook(rows("a", 3))) == "ready", "upload ends ready")
    check(usage_v.records.filter(R().usagefile.id.eq(f1["id"])).count() == 3, "3 records were created")
    check(usage_v.files[f1["id"]]("submit").post()["status"] == "pending", "submit gives pending")
    expect_error(lambda: usage_v.files[f1["id"]]("accept").post({"acceptance_note": "x"}), 403, "AUTH_002",
                 "the vendor cannot accept")
    check(usage_p.files[f1["id"]]("accept").post({"acceptance_note": "fine"})["status"] == "accepted",
          "the provider accepts")
    check(usage_v.files[f1["id"]].get()["status"] == "accepted", "the vendor sees it accepted")
    expect_error(lambda: usage_v.files[f1["id"]]("submit").post(), 400, "USG_002",
                 "submitting an accepted file is refused")
    check(usage_p.files[f1["id"]]("close").post()["status"] == "closed", "the provider closes it")

    print("usage file: invalid upload, reject")
    f2 = new_file(f"py-reject-{suffix}")
    bad_rows = rows("b", 2)
    bad_rows[1][3] = -5
    check(upload_and_wait(f2["id"], workbook(bad_rows)) == "invalid", "a negative quantity makes it invalid")
    invalid = list(usage_v.records.filter(R().usagefile.id.eq(f2["id"]), R().status.eq("invalid")))
    check(len(invalid) == 1 and "negative" in (invalid[0].get("error_details") or ""),
          "the invalid record says why", invalid)
    check(upload_and_wait(f2["id"], workbook(rows("b", 2))) == "ready", "a fixed upload ends ready")
    usage_v.files[f2["id"]]("submit").post()
    rejected = usage_p.files[f2["id"]]("reject").post({"rejection_note": "wrong month"})
    check(rejected["status"] == "rejected" and rejected["rejection_note"] == "wrong month", "the provider rejects")
    check(usage_v.files.filter(R().status.eq("rejected"), R().id.eq(f2["id"])).count() == 1,
          "filter by status finds it")

    print("errors")
    expect_error(lambda: usage_v.files["UF-2000-01-0000-0000"].get(), 404, "GEN_404", "an unknown file is 404")
    expect_error(lambda: usage_v.files.create({"name": "x"}), 400, "VAL_001", "a create without product is 400")
    expect_error(lambda: vendor.assets.filter(R().colour.eq("red")).count(), 400, "RQL_002",
                 "an unknown filter is 400")

    print(f"\n{'all checks passed' if not FAILED else str(len(FAILED)) + ' check(s) failed'}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
