"""bulk.py -- Bulk API 2.0: ingest jobs and query jobs under /jobs/.

Ingest:  POST jobs/ingest {object, operation (insert | update | upsert |
delete | hardDelete), externalIdFieldName, contentType CSV, lineEnding LF |
CRLF, columnDelimiter COMMA | TAB | ...} -> 200 job info, state Open;
PUT jobs/ingest/<id>/batches (Content-Type text/csv) -> 201; PATCH
jobs/ingest/<id> {"state": "UploadComplete"} starts processing in a
background thread (InProgress, then JobComplete or Failed), or
{"state": "Aborted"}.  GET jobs/ingest/<id> reports numberRecordsProcessed
and numberRecordsFailed as rows are done, 10,000 at a time (Salesforce's
internal batch size).  Then successfulResults/ ("sf__Id","sf__Created",
original columns), failedResults/ ("sf__Id","sf__Error", original
columns; sf__Error is "CODE:message:fields --") and unprocessedrecords/
(original columns): CSVs sent chunked, so 50,000 rows never sit in one
buffer on the way out.

Query:  POST jobs/query {operation query | queryAll, query} -> job info
(UploadComplete), processed in the background to JobComplete; GET
jobs/query/<id>/results[?locator=&maxRecords=] -> CSV with
Sforce-NumberOfRecords and Sforce-Locator (an opaque string, the string
"null" on the last page; numeric before v49).  412 JOB_NOT_COMPLETE before
the job completes; 409 when asked under another API version than the
job's.

Every row is written through the org as the job's user with changeOrigin
com/salesforce/api/bulkapi/<version>, so change events follow.
"""

import base64
import csv
import io
import json
import threading
import time

from . import ids, soql
from .response import CSV, Response, error, json_response, no_content
from .store import MultipleMatches, WriteContext, WriteError

DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|",
              "SEMICOLON": ";", "TAB": "\t"}
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
BATCH = 10000
MAX_UPLOAD = 150 * 1024 * 1024


def _csv_text(rows, delimiter=",", line_ending="\n"):
    """rows -> one CSV chunk, every value quoted (as Salesforce sends)."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL,
                   lineterminator=line_ending)
    w.writerows(rows)
    return buf.getvalue().encode()


def _chunks(header, rows, delimiter=",", line_ending="\n", size=2000):
    yield _csv_text([header], delimiter, line_ending)
    for i in range(0, len(rows), size):
        yield _csv_text(rows[i:i + size], delimiter, line_ending)


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Job:
    def __init__(self, sf, kind, body, session, version):
        self.sf = sf
        self.kind = kind                        # "ingest" or "query"
        self.id = sf.ids.new("750")
        self.operation = body.get("operation")
        self.object = body.get("object")
        self.external_id = body.get("externalIdFieldName")
        self.line_ending = body.get("lineEnding") or "LF"
        self.delimiter = body.get("columnDelimiter") or "COMMA"
        self.content_type = body.get("contentType") or "CSV"
        self.query = body.get("query")
        self.version = version
        self.user_id = session.user_id
        self.created = ids.sf_datetime()
        self.modstamp = self.created
        self.state = "Open" if kind == "ingest" else "UploadComplete"
        self.error_message = None
        self.uploads = []
        self.header = None
        self.processed = 0
        self.failed = 0
        self.success_rows = []
        self.failed_rows = []
        self.unprocessed_rows = []
        self.columns = []                       # query
        self.records = []                       # query
        self.started = None
        self.finished = None
        self.abort = False
        self.done = threading.Event()

    def touch(self, state=None):
        if state is not None:
            self.state = state
        self.modstamp = ids.sf_datetime()

    def info(self, full=True):
        d = {"id": self.id, "operation": self.operation,
             "object": self.object, "createdById": self.user_id,
             "createdDate": self.created, "systemModstamp": self.modstamp,
             "state": self.state}
        if self.external_id and self.kind == "ingest":
            d["externalIdFieldName"] = self.external_id
        d.update({"concurrencyMode": "Parallel",
                  "contentType": self.content_type,
                  "apiVersion": float(self.version)})
        if full:
            d["jobType"] = "V2Ingest" if self.kind == "ingest" else "V2Query"
        if self.kind == "ingest":
            d["contentUrl"] = "services/data/v%s/jobs/ingest/%s/batches" % (
                self.version, self.id)
        d.update({"lineEnding": self.line_ending,
                  "columnDelimiter": self.delimiter})
        if full:
            if self.error_message:
                d["errorMessage"] = self.error_message
            d["numberRecordsProcessed"] = self.processed
            if self.kind == "ingest":
                d["numberRecordsFailed"] = self.failed
            d["retries"] = 0
            ms = int(((self.finished or time.time()) - self.started) * 1000) \
                if self.started else 0
            d["totalProcessingTime"] = ms
            if self.kind == "ingest":
                d["apiActiveProcessingTime"] = ms
                d["apexProcessingTime"] = 0
        return d


class Bulk:
    """The /jobs/ resources of one emulator."""

    def __init__(self, sf):
        self.sf = sf
        self.lock = threading.Lock()
        self.jobs = {}
        self.start_delay = 0.0      # seconds a job stays InProgress first
        self.fail_after = None      # rows, then the job fails (test hook)

    def job(self, job_id):
        with self.lock:
            return self.jobs.get(job_id)

    def handle(self, method, parts, query, headers, body, session, version):
        """parts: the path after /jobs/, split on "/"."""
        kind = parts[0] if parts else ""
        if kind not in ("ingest", "query"):
            return error(404, "NOT_FOUND",
                         "The requested resource does not exist")
        rest = [p for p in parts[1:] if p]
        if not rest:
            if method == "POST":
                return self._create(kind, body, session, version)
            if method == "GET":
                with self.lock:
                    jobs = [j.info(False) for j in self.jobs.values()
                            if j.kind == kind]
                return json_response(200, {"done": True, "records": jobs,
                                           "nextRecordsUrl": None})
            return error(405, "METHOD_NOT_ALLOWED",
                         "HTTP Method '%s' not allowed. Allowed are GET,POST"
                         % method)
        job = self.job(rest[0])
        if job is None or job.kind != kind:
            return error(404, "NOT_FOUND",
                         "The requested resource does not exist")
        sub = rest[1] if len(rest) > 1 else None
        if sub is None:
            if method == "GET":
                return json_response(200, job.info())
            if method == "PATCH":
                return self._patch(job, body)
            if method == "DELETE":
                return self._delete(job)
        elif kind == "ingest" and sub == "batches" and method == "PUT":
            return self._upload(job, headers, body)
        elif kind == "ingest" and method == "GET" and sub in (
                "successfulResults", "failedResults", "unprocessedrecords"):
            return self._results(job, sub)
        elif kind == "query" and sub == "results" and method == "GET":
            return self._query_results(job, query, version)
        return error(404, "NOT_FOUND",
                     "The requested resource does not exist")

    # -- jobs --------------------------------------------------------------

    def _create(self, kind, raw, session, version):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return error(400, "JSON_PARSER_ERROR",
                         "Unexpected character in request body")
        if not isinstance(body, dict):
            return error(400, "JSON_PARSER_ERROR",
                         "Cannot deserialize instance of job")
        if kind == "query":
            if body.get("operation") not in ("query", "queryAll"):
                return error(400, "INVALIDJOB",
                             "Invalid operation: %s" % body.get("operation"))
            try:
                t, names, _, _ = soql.run(self.sf.org, body.get("query"))
            except WriteError as e:
                return error(400, e.code, e.message)
            body["object"] = t.name
        else:
            t = self.sf.org.type(body.get("object"))
            if t is None:
                return error(400, "INVALIDJOB",
                             "InvalidJob : Invalid object: %s"
                             % body.get("object"))
            body["object"] = t.name
            if body.get("operation") not in OPERATIONS:
                return error(400, "INVALIDJOB",
                             "InvalidJob : Invalid operation: %s"
                             % body.get("operation"))
            if body.get("operation") == "upsert":
                f = t.field(body.get("externalIdFieldName") or "")
                if f is None or (f != "Id" and f not in t.external_ids):
                    return error(400, "INVALIDJOB",
                                 "InvalidJob : External ID was blank or "
                                 "not an External ID field: %s"
                                 % body.get("externalIdFieldName"))
                body["externalIdFieldName"] = f
        if (body.get("columnDelimiter") or "COMMA") not in DELIMITERS:
            return error(400, "INVALIDJOB", "Invalid column delimiter: %s"
                         % body.get("columnDelimiter"))
        if (body.get("lineEnding") or "LF") not in ("LF", "CRLF"):
            return error(400, "INVALIDJOB", "Invalid line ending: %s"
                         % body.get("lineEnding"))
        if (body.get("contentType") or "CSV") != "CSV":
            return error(400, "INVALIDJOB", "Invalid content type: %s"
                         % body.get("contentType"))
        job = Job(self.sf, kind, body, session, version)
        with self.lock:
            self.jobs[job.id] = job
        answer = json_response(200, job.info(False))
        if kind == "query":
            self._start(job)
        return answer

    def _patch(self, job, raw):
        try:
            state = json.loads(raw or b"{}").get("state")
        except (ValueError, AttributeError):
            return error(400, "JSON_PARSER_ERROR",
                         "Unexpected character in request body")
        if state == "UploadComplete" and job.kind == "ingest" \
                and job.state == "Open":
            job.touch("UploadComplete")
            answer = json_response(200, job.info(False))
            self._start(job)
            return answer
        if state == "Aborted" and job.state in ("Open", "UploadComplete",
                                                "InProgress"):
            job.abort = True
            job.touch("Aborted")
            if job.started is None:
                job.finished = time.time()
                job.done.set()
            return json_response(200, job.info(False))
        return error(400, "INVALIDJOBSTATE",
                     "Job is in state %s and cannot be changed to %s"
                     % (job.state, state))

    def _delete(self, job):
        if job.state in ("UploadComplete", "InProgress"):
            return error(400, "INVALIDJOBSTATE",
                         "Job is in state %s and cannot be deleted"
                         % job.state)
        with self.lock:
            self.jobs.pop(job.id, None)
        return no_content()

    def _upload(self, job, headers, body):
        ctype = (headers.get("content-type") or "").split(";")[0].strip()
        if ctype != "text/csv":
            return error(400, "INVALIDCONTENTTYPE",
                         "Unsupported content type: %s" % ctype)
        if job.state != "Open":
            return error(400, "INVALIDJOBSTATE",
                         "Job is in state %s; data can be uploaded only to "
                         "an Open job" % job.state)
        if sum(len(u) for u in job.uploads) + len(body) > MAX_UPLOAD:
            return error(400, "INVALIDBATCH",
                         "Exceeded max size limit of 150 MB")
        job.uploads.append(body)
        job.touch()
        return Response(201, b"", None)

    # -- processing ----------------------------------------------------------

    def _start(self, job):
        threading.Thread(target=self._process, args=(job,),
                         daemon=True).start()

    def _process(self, job):
        job.started = time.time()
        if job.state != "Aborted":
            job.touch("InProgress")
        if self.start_delay:
            time.sleep(self.start_delay)
        try:
            if job.kind == "query":
                self._run_query(job)
            else:
                self._run_ingest(job)
        except Exception as e:                  # a bug: the job says so
            job.error_message = "InternalServerError : %s" % e
            job.touch("Failed")
        job.finished = time.time()
        job.done.set()

    def _rows(self, job):
        text = b"".join(job.uploads).decode("utf-8-sig")
        if job.line_ending == "LF" and "\r\n" in text:
            raise WriteError("INVALIDBATCH", "LineEnding is invalid on user "
                             "data. Current LineEnding setting is LF")
        reader = csv.reader(io.StringIO(text, newline=""),
                            delimiter=DELIMITERS[job.delimiter])
        rows = [r for r in reader if r]
        return (rows[0], rows[1:]) if rows else ([], [])

    def _run_ingest(self, job):
        org = self.sf.org
        t = org.type(job.object)
        try:
            header, rows = self._rows(job)
        except WriteError as e:
            job.error_message = e.message
            job.touch("Failed")
            return
        job.header = header
        fields = []
        for h in header:
            f = t.field(h)
            if f is None:
                job.error_message = "InvalidBatch : Field name not found : " \
                    "%s" % h
                job.unprocessed_rows = rows
                job.touch("Failed")
                return
            fields.append(f)
        op = job.operation
        for start in range(0, len(rows), BATCH):
            if job.abort:
                job.unprocessed_rows = rows[start:]
                return
            chunk = rows[start:start + BATCH]
            with org.lock:
                for n, row in enumerate(chunk):
                    if n % 200 == 0:
                        # Salesforce saves a batch's records 200 to a
                        # transaction: one transactionKey per 200 rows
                        ctx = WriteContext(job.user_id, "bulkapi",
                                           job.version)
                    if self.fail_after is not None and \
                            job.processed >= self.fail_after:
                        job.error_message = "InternalServerError : the " \
                            "emulator was told to fail this job"
                        job.unprocessed_rows = rows[start + n:]
                        job.touch("Failed")
                        return
                    self._row(job, t, op, fields, row, ctx)
                    job.processed += 1
            job.touch()
        if not job.abort:
            job.touch("JobComplete")

    def _row(self, job, t, op, fields, row, ctx):
        org = self.sf.org
        values = {}
        for f, v in zip(fields, row):
            if v == "":
                continue
            values[f] = None if v == "#N/A" else v
        rid = values.pop("Id", "") if op != "insert" else ""
        try:
            if op == "insert":
                if "Id" in values:
                    raise WriteError("INVALID_FIELD_FOR_INSERT_UPDATE",
                                     "cannot specify Id in an insert call",
                                     ["Id"])
                rid = org.create(t, values, ctx)
                created = True
            elif op == "update":
                if not rid:
                    raise WriteError("MISSING_ARGUMENT",
                                     "Id not specified in an update call")
                org.update(t, rid, values, ctx)
                created = False
            elif op == "upsert":
                key = values.pop(job.external_id, None) \
                    if job.external_id != "Id" else rid
                try:
                    rid, created = org.upsert(t, job.external_id, key,
                                              values, ctx)
                except MultipleMatches as m:
                    raise m.error(job.external_id, key)
            else:
                if not rid:
                    raise WriteError("MISSING_ARGUMENT",
                                     "Id not specified in a delete call")
                org.delete(t, rid, ctx)
                created = False
            job.success_rows.append([rid, "true" if created else "false"]
                                    + row)
        except WriteError as e:
            job.failed += 1
            job.failed_rows.append([rid or "", e.bulk()] + row)

    def _run_query(self, job):
        t, names, rows, count = soql.run(self.sf.org, job.query,
                                         job.operation == "queryAll")
        job.columns = names
        job.records = [[_cell(r.get(n)) for n in names] for r in rows]
        job.processed = len(job.records)
        job.touch("JobComplete")

    # -- results -----------------------------------------------------------

    def _results(self, job, which):
        if which != "unprocessedrecords" and job.state not in (
                "JobComplete", "Failed", "Aborted"):
            return error(400, "INVALIDJOBSTATE",
                         "Job is in state %s; results are available once "
                         "it is JobComplete, Failed or Aborted" % job.state)
        header = job.header or []
        d = DELIMITERS[job.delimiter]
        if which == "successfulResults":
            h, rows = ["sf__Id", "sf__Created"] + header, job.success_rows
        elif which == "failedResults":
            h, rows = ["sf__Id", "sf__Error"] + header, job.failed_rows
        else:
            if job.header is None and job.uploads:
                try:
                    header, rows = self._rows(job)
                except WriteError:
                    header, rows = [], []
                if job.state == "Open":
                    rows = []
                h = header
            else:
                h, rows = header, job.unprocessed_rows
        return Response(200, content_type=CSV,
                        chunks=_chunks(h, list(rows), d))

    def _query_results(self, job, query, version):
        if version != job.version:
            return error(409, "INVALIDJOB",
                         "This job was created in API version %s; get its "
                         "results with the same version" % job.version)
        if job.state != "JobComplete":
            return error(412, "JOB_NOT_COMPLETE",
                         "can only download query results of successfully "
                         "completed bulk job with status: JOB_COMPLETE. "
                         "Current status: %s" % {
                             "UploadComplete": "UPLOAD_COMPLETE",
                             "InProgress": "IN_PROGRESS",
                             "Aborted": "ABORTED",
                             "Failed": "FAILED"}.get(job.state, job.state))
        numeric = float(version) < 49
        start = 0
        query = {k: v[0] for k, v in query.items() if v}
        loc = query.get("locator")
        if loc:
            try:
                start = int(loc) if numeric else \
                    int(base64.b64decode(loc + "=" * (-len(loc) % 4)))
            except ValueError:
                return error(400, "INVALID_LOCATOR",
                             "Invalid locator: %s" % loc)
        try:
            page = int(query.get("maxRecords") or
                       self.sf.bulk_query_page_size)
        except ValueError:
            return error(400, "INVALID_MAX_RECORDS",
                         "Invalid maxRecords: %s" % query.get("maxRecords"))
        rows = job.records[start:start + page]
        end = start + len(rows)
        if end >= len(job.records):
            locator = "null"
        elif numeric:
            locator = str(end)
        else:
            locator = base64.b64encode(str(end).encode()).decode() \
                .rstrip("=")
        d = DELIMITERS[job.delimiter]
        le = "\r\n" if job.line_ending == "CRLF" else "\n"
        return Response(200, content_type=CSV, headers=[
            ("Sforce-NumberOfRecords", str(len(rows))),
            ("Sforce-Locator", locator)],
            chunks=_chunks(job.columns, rows, d, le))
