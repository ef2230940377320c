"""test_map.py -- build/vantage-map against independent implementations.

The mapping engine (common/vc_map.c) converts dates with its own calendar
arithmetic, numbers through jansson and phone numbers through a small
numbering-plan table.  Here its conversions, run through the CLI on
hundreds of generated values, are compared with Python's datetime,
float() and int(), and with libphonenumber (Debian's python3-phonenumbers),
none of which shares code with it.  The known differences from
libphonenumber are listed, so that a new one fails.  The CLI's own
contract (exit codes, messages, record streams) and the examples of
docs/MAPPING.md are checked too.
"""

import calendar
import datetime
import json
import os
import random
import re
import subprocess

import pytest

import vantage_harness as vh

phonenumbers = pytest.importorskip("phonenumbers")


MAP = os.environ.get("VANTAGE_MAP", os.path.join(vh.REPO, "build",
                                                 "vantage-map"))
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
DAY_MS = 86400000


@pytest.fixture(scope="module")
def map_bin():
    if not (os.path.exists(MAP) and os.access(MAP, os.X_OK)):
        pytest.skip("vantage-map not built: %s (run make map)" % MAP)
    return MAP


@pytest.fixture
def apply(map_bin, tmp_path):
    """apply(fields, values) -> [output or "error: <message>"], one for each
    value, mapped as the record {"v": value} by a mapping of fields."""

    def run(fields, values):
        path = tmp_path / "m.json"
        path.write_text(json.dumps({
            "name": "t", "from": "a", "to": "b",
            "fields": fields + [{"to": "i", "from": "i"}]}))
        stream = "\n".join(json.dumps({"v": v, "i": i})
                           for i, v in enumerate(values))
        p = subprocess.run([map_bin, "apply", str(path)], input=stream,
                           capture_output=True, text=True,
                           timeout=vh.timeout(60))
        assert p.returncode in (0, 1), p.stderr
        got = [None] * len(values)
        for line in p.stdout.splitlines():
            out = json.loads(line)
            got[out.pop("i")] = out
        for line in p.stderr.splitlines():
            m = re.match(r"vantage-map: record (\d+): (.*)$", line)
            assert m, line
            got[int(m.group(1)) - 1] = "error: " + m.group(2)
        assert None not in got
        return got

    return run


def one(field):
    """A mapping of one field, "v" to "x"."""
    return [dict({"to": "x", "from": "v"}, **field)]


def ms_of(dt):
    """Milliseconds since the epoch, exactly, for an aware datetime."""
    d = dt - EPOCH
    return d.days * DAY_MS + d.seconds * 1000 + d.microseconds // 1000


def iso_utc(ms):
    """The engine's ISO form of an instant, from Python's calendar."""
    dt = EPOCH + datetime.timedelta(milliseconds=ms)
    s = "%04d-%02d-%02dT%02d:%02d:%02d" % (dt.year, dt.month, dt.day,
                                          dt.hour, dt.minute, dt.second)
    if dt.microsecond:
        s += ".%03d" % (dt.microsecond // 1000)
    return s + "Z"


def random_dates(rnd, n):
    lo = datetime.date(1, 1, 1).toordinal()
    hi = datetime.date(9999, 12, 31).toordinal()
    days = [rnd.randint(lo, hi) for _ in range(n)]
    days += [lo, hi, datetime.date(1970, 1, 1).toordinal(),
             datetime.date(1969, 12, 31).toordinal(),
             datetime.date(2000, 2, 29).toordinal(),
             datetime.date(2024, 2, 29).toordinal(),
             datetime.date(1600, 2, 29).toordinal(),
             datetime.date(1900, 3, 1).toordinal()]
    days += [rnd.randint(datetime.date(1900, 1, 1).toordinal(),
                         datetime.date(2100, 1, 1).toordinal())
             for _ in range(n)]
    return [datetime.date.fromordinal(d) for d in days]


# --------------------------------------------------------------------------
# dates

def test_dates_to_hubspot_ms_and_back(apply):
    rnd = random.Random(1)
    dates = random_dates(rnd, 300)
    isos = [d.isoformat() for d in dates]

    out = apply(one({"type": "date", "format_out": "epoch_ms_midnight_utc"}),
                isos)
    want = [{"x": calendar.timegm(d.timetuple()) * 1000} for d in dates]
    assert out == want

    back = apply(one({"type": "date",
                      "format_in": "epoch_ms_midnight_utc"}),
                 [w["x"] for w in want])
    assert back == [{"x": s} for s in isos]

    secs = apply(one({"type": "date", "format_out": "epoch_s"}), isos)
    assert secs == [{"x": calendar.timegm(d.timetuple())} for d in dates]

    # a pattern, written with Python's numbers (strftime's %Y is not
    # zero-padded below 1000 on glibc)
    pat = apply(one({"type": "date", "format_out": "%d/%m/%Y"}), isos)
    assert pat == [{"x": "%02d/%02d/%04d" % (d.day, d.month, d.year)}
                   for d in dates]


def test_only_calendar_dates_are_dates(apply):
    rnd = random.Random(2)
    triples = [(rnd.choice([1, 4, 1900, 1999, 2000, 2023, 2024, 2100, 9999]),
                rnd.randint(0, 13), rnd.randint(0, 32)) for _ in range(600)]
    values = ["%04d-%02d-%02d" % t for t in triples]
    out = apply(one({"type": "date"}), values)

    for (y, m, d), s, got in zip(triples, values, out):
        try:
            datetime.date(y, m, d)
        except ValueError:
            assert got == ('error: fields[0] (x): "%s" is not a date in '
                           'format_in iso' % s)
        else:
            assert got == {"x": s}


def test_datetimes_with_offsets(apply):
    rnd = random.Random(3)
    lo = ms_of(datetime.datetime(2, 1, 1, tzinfo=datetime.timezone.utc))
    hi = ms_of(datetime.datetime(9998, 12, 31, tzinfo=datetime.timezone.utc))
    instants = [rnd.randint(lo, hi) for _ in range(300)]
    instants += [rnd.randint(-10 ** 12, 4 * 10 ** 12) for _ in range(300)]
    instants += [0, -1, 999, -999, 1000, -1001]

    values, want = [], []
    for ms in instants:
        minutes = rnd.randint(-14 * 60, 14 * 60)
        tz = datetime.timezone(datetime.timedelta(minutes=minutes))
        local = (EPOCH + datetime.timedelta(milliseconds=ms)).astimezone(tz)
        # Python's own ISO text: +hh:mm, fractions of 3 or 6 digits
        text = local.isoformat(timespec=rnd.choice(
            ["seconds", "milliseconds", "microseconds"]))
        ms_in_text = ms_of(datetime.datetime.fromisoformat(text))
        values.append(text)
        want.append(ms_in_text)

    out = apply(one({"type": "datetime", "format_out": "epoch_ms"}), values)
    assert out == [{"x": w} for w in want]

    back = apply(one({"type": "datetime", "format_in": "epoch_ms"}), want)
    assert back == [{"x": iso_utc(w)} for w in want]

    # epoch seconds round down, as Python's floor division does
    secs = apply(one({"type": "datetime", "format_out": "epoch_s"}), values)
    assert secs == [{"x": w // 1000} for w in want]

    # an instant's date is its UTC day
    days = apply(one({"type": "date"}), values)
    assert days == [{"x": (EPOCH + datetime.timedelta(
        days=w // DAY_MS)).date().isoformat()} for w in want]


def test_salesforce_datetimes(apply):
    rnd = random.Random(4)
    values, want = [], []
    for _ in range(200):
        ms = rnd.randint(0, 4 * 10 ** 12)
        dt = EPOCH + datetime.timedelta(milliseconds=ms)
        # Salesforce writes 2011-12-02T22:32:48.000+0000
        values.append(dt.strftime("%Y-%m-%dT%H:%M:%S.") +
                      "%03d" % (dt.microsecond // 1000) + "+0000")
        want.append(ms)

    out = apply(one({"type": "datetime", "format_out": "epoch_ms"}), values)
    assert out == [{"x": w} for w in want]

    back = apply(one({"type": "datetime", "format_in": "epoch_ms",
                      "format_out": "%Y-%m-%dT%H:%M:%S.%f%z"}), want)
    assert back == [{"x": v} for v in values]


def test_date_patterns_against_strptime(apply):
    rnd = random.Random(5)
    dates = random_dates(rnd, 200)
    dates = [d for d in dates if d.year >= 1000]
    # US dates as people write them: no zero padding
    values = ["%d/%d/%04d" % (d.month, d.day, d.year) for d in dates]

    out = apply(one({"type": "date", "format_in": "%m/%d/%Y"}), values)
    assert out == [{"x": datetime.datetime.strptime(v, "%m/%d/%Y")
                    .date().isoformat()} for v in values]

    times = ["%s %d:%02d" % (v, rnd.randint(0, 23), rnd.randint(0, 59))
             for v in values]
    out = apply(one({"type": "datetime", "format_in": "%m/%d/%Y %H:%M",
                     "format_out": "epoch_ms"}), times)
    assert out == [{"x": ms_of(datetime.datetime.strptime(t, "%m/%d/%Y %H:%M")
                               .replace(tzinfo=datetime.timezone.utc))}
                   for t in times]


# --------------------------------------------------------------------------
# numbers

def test_numbers_against_python(apply):
    rnd = random.Random(7)
    ints, reals = [], []
    for _ in range(300):
        ints.append(rnd.choice(["", "-", "+"]) + rnd.choice(["", "0", "00"])
                    + str(rnd.randint(0, 10 ** rnd.randint(1, 18))))
        reals.append("%s%d.%s%s" % (
            rnd.choice(["", "-"]), rnd.randint(0, 10 ** rnd.randint(0, 9)),
            "".join(rnd.choice("0123456789")
                    for _ in range(rnd.randint(1, 12))),
            rnd.choice(["", "e%d" % rnd.randint(-300, 300),
                        "E+%d" % rnd.randint(0, 30)])))

    out = apply(one({"type": "number"}), ints)
    assert out == [{"x": int(s)} for s in ints]

    out = apply(one({"type": "number"}), reals)
    assert out == [{"x": float(s)} for s in reals]
    assert all(isinstance(o["x"], float) for o in out)

    # as text: a real in the fewest digits that read back the same, which
    # is what Python's repr() writes too
    out = apply(one({"type": "number", "format_out": "string"}), reals)
    for s, o in zip(reals, out):
        text = o["x"]
        assert float(text) == float(s)
        digits = lambda t: len(re.sub(r"^0+", "", re.sub(
            r"[^0-9]", "", t.lower().split("e")[0])).rstrip("0") or "0")
        assert digits(text) <= digits(repr(float(s)))

    bad = ["1,5", "1 000", "0x10", "1.", ".5", "1e", "--1", "1_000", "inf",
           "NaN", "١٢", "12€"]
    out = apply(one({"type": "number"}), bad)
    assert out == ['error: fields[0] (x): %s is not a number' % json.dumps(b,
                   ensure_ascii=False) for b in bad]


# --------------------------------------------------------------------------
# phones, against libphonenumber

REGIONS = ["US", "CA", "GB", "IE", "FR", "AU"]
CODE = {"US": "1", "CA": "1", "GB": "44", "IE": "353", "FR": "33",
        "AU": "61"}
PT = phonenumbers.PhoneNumberType
PF = phonenumbers.PhoneNumberFormat

# short codes, which the engine's length table refuses and libphonenumber
# knows: a Canadian universal access number, an Australian pager number
SHORT = {("CA", PT.UAN), ("AU", PT.PAGER)}


def by_region(apply, values):
    """{region: [output or error]} for values read in each region."""
    return {r: apply(one({"type": "phone_e164", "default_region": r}),
                     values) for r in REGIONS}


def test_phone_example_numbers(apply):
    """Every example number libphonenumber has for these countries, in its
    national, international and E.164 forms, read in its own region."""
    rows = []
    for r in REGIONS:
        for t in PT.values():
            ex = phonenumbers.example_number_for_type(r, t)
            if ex is None:
                continue
            for f in (PF.NATIONAL, PF.INTERNATIONAL, PF.E164):
                rows.append((r, t, phonenumbers.format_number(ex, f),
                             phonenumbers.format_number(ex, PF.E164)))
    assert len(rows) > 100

    out = by_region(apply, [text for _, _, text, _ in rows])

    short = []
    for i, (r, t, text, e164) in enumerate(rows):
        o = out[r][i]
        if (r, t) in SHORT:
            short.append(text)
            assert isinstance(o, str) and "has the wrong number of digits" \
                in o, (r, text, o)
            continue
        assert o == {"x": e164}, (r, t, text)
    assert len(short) == 6


def test_phone_random_digits(apply):
    """Random digit strings, national or after +<code of the table>, read
    in each region.  What the engine accepts for a country of its table,
    libphonenumber finds possible and writes alike; other countries are
    held to E.164's bounds only.  What libphonenumber finds valid in a
    country of the table, with a length the table has and written with at
    most a trunk prefix or a country code before it, the engine accepts."""
    rnd = random.Random(8)
    lens = {"US": (10, 10), "CA": (10, 10), "GB": (9, 10), "IE": (7, 10),
            "FR": (9, 9), "AU": (9, 10)}
    codes = set(CODE.values())
    values = []
    while len(values) < 4000:
        lead = rnd.choice(["", "", "", "0", "1", "+1", "+44", "+44 (0)",
                           "+353", "+33", "+61"])
        v = lead + "".join(rnd.choice("0123456789")
                           for _ in range(rnd.randint(6, 12)))
        # "00" starts an international number here, not in libphonenumber's
        # +1 regions (docs/MAPPING.md)
        if not v.startswith("00"):
            values.append(v)

    out = by_region(apply, values)

    accepted = valid = known = outside = 0
    for i, text in enumerate(values):
        digits = re.sub(r"[^0-9]", "", text)
        for r in REGIONS:
            o = out[r][i]
            ours = o["x"] if isinstance(o, dict) else None
            try:
                n = phonenumbers.parse(text, r)
            except phonenumbers.NumberParseException:
                n = None
            theirs = n and phonenumbers.format_number(n, PF.E164)
            if n is not None and phonenumbers.is_valid_number(n):
                valid += 1

            if ours is not None:
                accepted += 1
                if not any(ours[1:].startswith(c) for c in codes):
                    # "011 58 ...": a country outside the table
                    outside += 1
                    assert re.match(r"^\+[1-9][0-9]{6,14}$", ours), ours
                    continue
                # libphonenumber strips Australia's caller-ID prefixes; and
                # a national number that starts with the country's own code
                # may be read as that code and the rest (and a trunk 0) by
                # one side and not the other, as each one's rules say
                if theirs and theirs != ours and (
                        re.match(r"\+61183[12]", ours)
                        or (not text.startswith("+")
                            and digits.startswith(CODE[r]))):
                    known += 1
                    continue
                assert n is not None and phonenumbers.is_possible_number(n), \
                    (r, text, ours)
                assert theirs == ours, (r, text)

            elif n is not None and phonenumbers.is_valid_number(n):
                home = phonenumbers.region_code_for_number(n)
                nsn = str(n.national_number)
                lo, hi = lens.get(home, (0, 0))
                if text.startswith("+"):
                    extra = len(digits) - len(str(n.country_code)) - len(nsn)
                    plain = extra == 0 or (extra == 1 and "(0)" in text)
                else:
                    extra = len(digits) - len(nsn)
                    plain = home == r and (extra == 0 or (
                        extra == 1 and digits[0] == ("1" if CODE[r] == "1"
                                                     else "0")))
                if plain and lo <= len(nsn) <= hi:
                    pytest.fail("%s in %s: valid %s refused: %s" % (
                        text, r, theirs, o))

    # enough of each to mean something, and the known differences rare
    assert accepted > 2000 and valid > 1000, (accepted, valid)
    assert known < accepted // 50, (known, accepted)
    assert outside < accepted // 10, (outside, accepted)


def test_phone_refusals(apply):
    values = ["12ab", "415-555-0132 x22", "1-800-FLOWERS", "+", "",
              "555-0132", "(015) 555-0132", "(415) 155-0132", "911 555 0132"]
    out = apply(one({"type": "phone_e164", "default_region": "US"}), values)
    assert out == [
        'error: fields[0] (x): "12ab" is not a phone number',
        'error: fields[0] (x): "415-555-0132 x22" is not a phone number',
        'error: fields[0] (x): "1-800-FLOWERS" is not a phone number',
        'error: fields[0] (x): "+" is not a phone number',
        {},
        'error: fields[0] (x): "555-0132" has the wrong number of digits '
        'for +1',
        'error: fields[0] (x): "(015) 555-0132" is not a possible number '
        'for +1',
        'error: fields[0] (x): "(415) 155-0132" is not a possible number '
        'for +1',
        'error: fields[0] (x): "911 555 0132" is not a possible number '
        'for +1']
    # libphonenumber refuses the numbers too; it reads an extension and
    # letters, which the engine refuses rather than drop or guess
    for v in values[:4] + values[5:]:
        try:
            n = phonenumbers.parse(v, "US")
        except phonenumbers.NumberParseException:
            continue
        assert phonenumbers.is_valid_number(n) == (v in (values[1],
                                                         values[2])), v


# --------------------------------------------------------------------------
# the tool itself

def test_check_the_examples(map_bin):
    files = sorted(os.path.join(vh.REPO, "conf", "mappings", f)
                   for f in os.listdir(os.path.join(vh.REPO, "conf",
                                                    "mappings")))
    assert len(files) >= 2
    p = subprocess.run([map_bin, "check"] + files, capture_output=True,
                       text=True, timeout=vh.timeout(10))
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert len(p.stdout.splitlines()) == len(files)
    assert ('hubspot-contact-to-salesforce.json: ok: '
            '"hubspot-contact-to-salesforce", hubspot.contact -> '
            'salesforce.Contact, 16 fields') in p.stdout


def test_check_reports_file_and_entry(map_bin, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "b", "from": "a", "to": "b",
                               "fields": [{"to": "x", "from": "y"},
                                          {"to": "phone", "from": "Phone",
                                           "type": "phon"}]}))
    good = os.path.join(vh.REPO, "conf", "mappings",
                        "salesforce-contact-to-hubspot.json")
    p = subprocess.run([map_bin, "check", good, str(bad)],
                       capture_output=True, text=True,
                       timeout=vh.timeout(10))
    assert p.returncode == 1
    assert p.stdout.startswith(good + ": ok: ")
    assert p.stderr == (
        'vantage-map: %s: fields[1] (phone): unknown type "phon"; expected '
        'one of string, number, integer, boolean, date, datetime, '
        'phone_e164\n' % bad)

    p = subprocess.run([map_bin, "check"], capture_output=True, text=True,
                       timeout=vh.timeout(10))
    assert p.returncode == 2
    p = subprocess.run([map_bin, "frobnicate"], capture_output=True,
                       text=True, timeout=vh.timeout(10))
    assert p.returncode == 2 and p.stderr.startswith("Usage: vantage-map")


def test_apply_a_stream(map_bin, tmp_path):
    m = os.path.join(vh.REPO, "conf", "mappings",
                     "hubspot-contact-to-salesforce.json")
    stream = ('{"properties": {"email": "A@B.io"}}'
              '{"properties": {"email": "c@d.io", "phone": "12ab"}}\n'
              '[1]\n'
              '{"properties": {"email": "e@f.io", "lastname": "Ng"}}\n'
              '{"properties": \n {"email": ]}\n'
              '{"properties": {"email": "never@read.io"}}\n')
    p = subprocess.run([map_bin, "apply", m], input=stream,
                       capture_output=True, text=True,
                       timeout=vh.timeout(10))
    assert p.returncode == 1
    assert [json.loads(l) for l in p.stdout.splitlines()] == [
        {"Email": "a@b.io", "LastName": "[not provided]",
         "Sync_Source__c": "hubspot"},
        {"Email": "e@f.io", "LastName": "Ng", "Sync_Source__c": "hubspot"}]
    assert p.stderr.splitlines() == [
        'vantage-map: record 2: fields[3] (Phone): "12ab" is not a phone '
        'number',
        'vantage-map: record 3: the record is not a JSON object',
        "vantage-map: record 5: invalid JSON at line 5, column 12: "
        "unexpected token near ']'"]

    rec = tmp_path / "r.json"
    rec.write_text('{"properties": {"email": "a@b.io"}}')
    p = subprocess.run([map_bin, "apply", "--pretty", m, str(rec)],
                       capture_output=True, text=True,
                       timeout=vh.timeout(10))
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout == ('{\n  "Email": "a@b.io",\n  "LastName": '
                        '"[not provided]",\n  "Sync_Source__c": "hubspot"\n}'
                        '\n')


def test_the_documented_example(map_bin, tmp_path):
    """docs/MAPPING.md's first example maps as the page says it does."""
    with open(os.path.join(vh.REPO, "docs", "MAPPING.md")) as f:
        blocks = re.findall(r"```json\n(.*?)```", f.read(), re.S)
    mapping, record, want = blocks[0], blocks[1], blocks[2]
    path = tmp_path / "first.json"
    path.write_text(mapping)
    p = subprocess.run([map_bin, "apply", str(path)], input=record,
                       capture_output=True, text=True,
                       timeout=vh.timeout(10))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == json.loads(want)
