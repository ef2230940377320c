"""sf_extid_index.py -- an index of one external id for a Salesforce
emulator running in this process.

The emulator's Org.find() reads every record, so an upsert of N records
by external id costs it N^2/2 comparisons: 1.25e9 for 50,000 records,
minutes of CPU.  index_external_ids(sf) answers find() for one type and
field from an index kept up to date by create() and update(); every
candidate is checked against the live record, so the answers are the same
as the scan's, only faster.  For load tests and benchmarks; the emulator
itself is unchanged.
"""


def index_external_ids(sf, type_name="Contact", field="ExtId__c"):
    org = sf.org
    t = org.type(type_name)
    index = {}
    find, create, update = org.find, org.create, org.update

    def note(rid):
        rec = org.get(t, rid)
        if rec is not None and rec.get(field) is not None:
            index.setdefault(str(rec[field]), set()).add(rid)

    def indexed_find(t2, f, value):
        if t2 is not t or f != field:
            return find(t2, f, value)
        out = []
        for rid in sorted(index.get(str(value), ())):
            rec = org.get(t, rid)
            if rec is not None and rec.get(f) is not None \
                    and str(rec.get(f)) == str(value):
                out.append(rid)
        return out

    def indexed_create(t2, *a, **kw):
        rid = create(t2, *a, **kw)
        if t2 is t:
            note(rid)
        return rid

    def indexed_update(t2, *a, **kw):
        rid = update(t2, *a, **kw)
        if t2 is t:
            note(rid)
        return rid

    with org.lock:
        for rec in org.all(t):
            note(rec["Id"])
        org.find, org.create, org.update = indexed_find, indexed_create, \
            indexed_update
