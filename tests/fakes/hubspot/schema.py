"""schema.py -- the object types, their properties, and value validation.

Contacts (objectTypeId 0-1), companies (0-2) and deals (0-3) with a few of
HubSpot's default properties each; a test adds its own (custom, possibly
unique) properties with ObjectType.add_property().  HubSpot returns every
property value as a string (numbers "1000", datetimes ISO 8601 in UTC with
milliseconds), so values are normalised to strings on the way in.

Invalid values are reported as HubSpot reports them, one problem per
property: {"isValid":false,"message":...,"error":CODE,"name":...,
"localizedErrorMessage":...,"portalId":...} with the codes
PROPERTY_DOESNT_EXIST and INVALID_EMAIL ("Email address x is invalid") and
INVALID_OPTION ("x was not one of the allowed options: [...]") [C: bodies
in public client code]; READ_ONLY_VALUE, INVALID_DECIMAL and INVALID_DATE
and their messages are [M].
"""

import datetime
import re


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class Property:
    def __init__(self, name, type="string", options=None, unique=False,
                 read_only=False):
        self.name = name
        self.type = type                # string number enumeration
        self.options = options          # datetime date bool
        self.unique = unique
        self.read_only = read_only


def iso_ms(ms):
    """HubSpot's timestamp form: 2019-10-30T03:30:17.883Z"""
    dt = datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (int(ms) % 1000)


def parse_time_ms(value):
    """Epoch milliseconds from an epoch-ms number or string, or an ISO 8601
    date or date-time; None if it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip()
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            dt = datetime.datetime.strptime(s, "%Y-%m-%d").replace(
                tzinfo=datetime.timezone.utc)
        else:
            dt = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return int(dt.timestamp() * 1000)


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    s = str(value).strip()
    try:
        float(s)
    except ValueError:
        return None
    return s


class ObjectType:
    def __init__(self, name, singular, type_id, label, last_modified,
                 defaults, properties):
        self.name = name                # "contacts"
        self.singular = singular        # "contact", as in event types
        self.type_id = type_id          # "0-1"
        self.label = label              # "CONTACT", as in messages
        self.last_modified = last_modified
        self.defaults = list(defaults)  # returned when none are asked for
        self.properties = {}
        for p in properties:
            self.properties[p.name] = p

    def add_property(self, name, type="string", options=None, unique=False):
        """A custom property; unique ones can be an upsert's idProperty."""
        self.properties[name] = Property(name, type, options, unique)

    def unique_properties(self):
        return [p.name for p in self.properties.values() if p.unique]

    def validate(self, props, portal_id):
        """(normalised {name: str}, problems).  An empty string clears a
        value and is kept as ""."""
        clean, problems = {}, []

        def problem(name, code, message):
            problems.append({"isValid": False, "message": message,
                             "error": code, "name": name,
                             "localizedErrorMessage": message,
                             "portalId": portal_id})

        for name, value in props.items():
            p = self.properties.get(name)
            if p is None:
                problem(name, "PROPERTY_DOESNT_EXIST",
                        'Property "%s" does not exist' % name)
                continue
            if p.read_only:
                problem(name, "READ_ONLY_VALUE",
                        'Property "%s" is read-only' % name)
                continue
            if value is None or value == "":
                clean[name] = ""
                continue
            if p.type == "number":
                v = _number(value)
                if v is None:
                    problem(name, "INVALID_DECIMAL",
                            "%s was not a valid number." % value)
                    continue
            elif p.type == "enumeration":
                v = str(value)
                if v not in p.options:
                    problem(name, "INVALID_OPTION",
                            "%s was not one of the allowed options: [%s]"
                            % (v, ", ".join(p.options)))
                    continue
            elif p.type in ("datetime", "date"):
                ms = parse_time_ms(value)
                if ms is None:
                    problem(name, "INVALID_DATE",
                            "%s is not a valid date" % value)
                    continue
                v = iso_ms(ms) if p.type == "datetime" else \
                    iso_ms(ms)[:10]
            elif p.type == "bool":
                v = str(value).lower()
                if v not in ("true", "false"):
                    problem(name, "INVALID_BOOLEAN",
                            "%s was not a valid boolean." % value)
                    continue
            else:
                v = value if isinstance(value, str) else str(value)
                if name == "email" and not EMAIL.match(v):
                    problem(name, "INVALID_EMAIL",
                            "Email address %s is invalid" % v)
                    continue
            clean[name] = v
        return clean, problems


def _read_only(*names):
    return [Property(n, "datetime" if "date" in n else "string",
                     read_only=True) for n in names]


def default_types():
    """A fresh {name: ObjectType} for contacts, companies and deals."""
    lifecycle = ["subscriber", "lead", "marketingqualifiedlead",
                 "salesqualifiedlead", "opportunity", "customer",
                 "evangelist", "other"]
    stages = ["appointmentscheduled", "qualifiedtobuy",
              "presentationscheduled", "decisionmakerboughtin",
              "contractsent", "closedwon", "closedlost"]
    contacts = ObjectType(
        "contacts", "contact", "0-1", "CONTACT", "lastmodifieddate",
        # the defaults the search docs list for contacts [D]
        ["createdate", "email", "firstname", "hs_object_id",
         "lastmodifieddate", "lastname"],
        [Property("email", unique=True), Property("firstname"),
         Property("lastname"), Property("phone"), Property("company"),
         Property("website"), Property("jobtitle"),
         Property("lifecyclestage", "enumeration", lifecycle),
         Property("hs_object_id", "number", read_only=True)]
        + _read_only("createdate", "lastmodifieddate"))
    companies = ObjectType(
        "companies", "company", "0-2", "COMPANY", "hs_lastmodifieddate",
        ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id",
         "name"],
        [Property("name"), Property("domain"), Property("city"),
         Property("industry"), Property("phone"),
         Property("numberofemployees", "number"),
         Property("annualrevenue", "number"),
         Property("hs_object_id", "number", read_only=True)]
        + _read_only("createdate", "hs_lastmodifieddate"))
    deals = ObjectType(
        "deals", "deal", "0-3", "DEAL", "hs_lastmodifieddate",
        ["amount", "closedate", "createdate", "dealname", "dealstage",
         "hs_lastmodifieddate", "hs_object_id", "pipeline"],
        [Property("dealname"), Property("amount", "number"),
         Property("dealstage", "enumeration", stages),
         Property("pipeline", "enumeration", ["default"]),
         Property("closedate", "datetime"),
         Property("hs_object_id", "number", read_only=True)]
        + _read_only("createdate", "hs_lastmodifieddate"))
    return {t.name: t for t in (contacts, companies, deals)}
