# Vantage -- entry points.  `make run` starts the demo stack, `make test`
# runs every test; both install what is missing first.

SHELL        := /bin/bash
NGX_SRC      ?= /usr/share/nginx/src
NGINX        ?= /usr/sbin/nginx
PYTHON       := /usr/bin/python3
B            := build

# Debian's compiler and linker flags for the packaged nginx (nginx -V), so the
# module is built exactly as Debian builds its own dynamic modules.
DEB_CC_OPT   := -g -O2 -fstack-protector-strong -Wformat \
                -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
DEB_LD_OPT   := -Wl,-z,relro -Wl,-z,now -fPIC
SAN_FLAGS    := -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined

MODULE_SRCS  := config $(wildcard ngx_vantage_module/*.[ch] common/*.[ch])
COMMON_SRCS  := $(wildcard common/*.c)
CFLAGS_PLAIN := -std=gnu99 -g -O2 -W -Wall -Wno-unused-parameter -Werror \
                -Wpointer-arith -fPIC -Icommon
COMMON_LIBS  := -lcrypto -ljansson -lm

UNIT_SRCS    := $(wildcard tests/unit/test_*.c)
UNIT_BINS    := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit/%)

# a unit test of a worker file links that file and what it calls, beside
# common/; UNIT_EXTRA_<test> names them, UNIT_LIBS_<test> the libraries
# they need beyond COMMON_LIBS
UNIT_EXTRA_test_vw_conf  := worker/src/conf.c worker/src/log.c
UNIT_EXTRA_test_target   := worker/src/target.c
UNIT_EXTRA_test_vw_vault := worker/src/vault.c worker/src/log.c
UNIT_LIBS_test_vw_vault  := -lhiredis
UNIT_EXTRA_test_vw_metrics := worker/src/metrics.c
UNIT_EXTRA_test_vw_alert := worker/src/alert_eval.c
UNIT_EXTRA_test_vw_status := worker/src/status.c worker/src/metrics.c

.PHONY: all deps module asan worker ctl map unit integration integration-asan \
        test test-fast run fuzz fuzz-replay bench bench-jobs microbench \
        microbench-transform \
        valgrind clean install install-dashboard uninstall

all: deps module worker ctl map

deps:
	@lua-free-scripts/install-deps.sh

module: $(B)/ngx_vantage_module.so
asan: $(B)/asan/ngx_vantage_module.so

# nginx's configure writes a Makefile into the directory it runs from, so it
# runs in a private copy of Debian's configure tree, never in /usr/share.
$(B)/nginx-src/configure:
	@mkdir -p $(B)
	rm -rf $(B)/nginx-src
	cp -r $(NGX_SRC) $(B)/nginx-src

# $(1): build dir, $(2): extra cc flags, $(3): extra ld flags
define ngx_configure
	cd $(B)/nginx-src && . ./conf_flags && ./configure \
	    --with-cc-opt="$(DEB_CC_OPT) $(2)" --with-ld-opt="$(DEB_LD_OPT) $(3)" \
	    "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	    --builddir=$(CURDIR)/$(1) > $(CURDIR)/$(1).configure.log 2>&1 \
	    || { tail -20 $(CURDIR)/$(1).configure.log; exit 1; }
endef

$(B)/nginx/Makefile: $(B)/nginx-src/configure config Makefile
	$(call ngx_configure,$(B)/nginx,,)

$(B)/nginx-asan/Makefile: $(B)/nginx-src/configure config Makefile
	$(call ngx_configure,$(B)/nginx-asan,$(SAN_FLAGS),$(SAN_FLAGS))

$(B)/ngx_vantage_module.so: $(B)/nginx/Makefile $(MODULE_SRCS)
	$(MAKE) -s -f $(CURDIR)/$(B)/nginx/Makefile -C $(B)/nginx-src modules
	cp $(B)/nginx/ngx_vantage_module.so $@.tmp && mv -f $@.tmp $@

$(B)/asan/ngx_vantage_module.so: $(B)/nginx-asan/Makefile $(MODULE_SRCS)
	$(MAKE) -s -f $(CURDIR)/$(B)/nginx-asan/Makefile -C $(B)/nginx-src modules
	@mkdir -p $(B)/asan
	cp $(B)/nginx-asan/ngx_vantage_module.so $@.tmp && mv -f $@.tmp $@

worker: $(B)/vantage-worker

# the daemon and its vendor connectors (worker/src/connectors/<vendor>.c)
WORKER_SRCS := $(wildcard worker/src/*.c worker/src/connectors/*.c)

$(B)/vantage-worker: $(WORKER_SRCS) $(wildcard worker/src/*.h \
                     worker/src/connectors/*.h) $(COMMON_SRCS)
	@mkdir -p $(B)
	$(CC) $(CFLAGS_PLAIN) -Iworker/src -o $@ $(WORKER_SRCS) $(COMMON_SRCS) \
	    $(COMMON_LIBS) -levent -lhiredis -lcurl


# the operator's tool: blocking hiredis, no event loop, nothing of the
# worker's sources (it reads Redis through the layout of docs/WORKER.md);
# the API key parser of the module, to write only files nginx loads, and
# the vault's records, the worker's format
ctl: $(B)/vantagectl

$(B)/vantagectl: $(wildcard worker/ctl/*.c worker/ctl/*.h) \
                common/vc_apikeys.c common/vc_apikeys.h \
                common/vc_vault.c common/vc_vault.h
	@mkdir -p $(B)
	$(CC) $(CFLAGS_PLAIN) -Iworker/ctl -o $@ $(wildcard worker/ctl/*.c) \
	    common/vc_apikeys.c common/vc_vault.c -lhiredis -ljansson -lcrypto

# the mapping tool (docs/MAPPING.md): the engine and the masking it quotes
# record values through, nothing else of common/
map: $(B)/vantage-map

$(B)/vantage-map: tools/vantage-map.c common/vc_map.c common/vc_map.h \
                  common/vc_mask.c common/vc_mask.h common/vc_common.h
	@mkdir -p $(B)
	$(CC) $(CFLAGS_PLAIN) -o $@ tools/vantage-map.c common/vc_map.c \
	    common/vc_mask.c -ljansson -lm

$(B)/unit/%: tests/unit/%.c $(COMMON_SRCS) $(wildcard common/*.h)
	@mkdir -p $(B)/unit
	$(CC) $(CFLAGS_PLAIN) $(SAN_FLAGS) -Iworker/src -o $@ $< \
	    $(UNIT_EXTRA_$*) $(COMMON_SRCS) $(COMMON_LIBS) $(UNIT_LIBS_$*) \
	    -lcmocka

$(B)/unit/test_vw_conf: $(UNIT_EXTRA_test_vw_conf) $(wildcard worker/src/*.h)
$(B)/unit/test_target: $(UNIT_EXTRA_test_target) worker/src/vw_target.h
$(B)/unit/test_vw_vault: $(UNIT_EXTRA_test_vw_vault) $(wildcard worker/src/*.h)
$(B)/unit/test_vw_alert: $(UNIT_EXTRA_test_vw_alert) worker/src/vw_alert.h
$(B)/unit/test_vw_metrics: $(UNIT_EXTRA_test_vw_metrics) worker/src/vw_metrics.h
$(B)/unit/test_vw_status: $(UNIT_EXTRA_test_vw_status) $(wildcard worker/src/*.h)

unit: deps $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: deps module worker ctl map
	cd tests/integration && $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

integration-asan: deps asan worker ctl map
	cd tests/integration && VANTAGE_SANITIZE=1 \
	    VANTAGE_MODULE=$(CURDIR)/$(B)/asan/ngx_vantage_module.so \
	    $(PYTHON) -m pytest -q -p no:cacheprovider -m "not slow and not load" \
	    $(PYTEST_ARGS)

test-fast: deps module worker unit fuzz-replay integration

test: test-fast integration-asan

run: deps module worker ctl
	@lua-free-scripts/run-demo.sh

# memcheck over the unit tests (built without ASan, which valgrind cannot
# run under) and over the integration tests with nginx under valgrind
valgrind: deps module worker ctl
	@mkdir -p $(B)/valgrind
	@set -e; $(foreach t,$(UNIT_SRCS:tests/unit/%.c=%), \
	    $(CC) $(CFLAGS_PLAIN) -Iworker/src -o $(B)/valgrind/$(t) \
	        tests/unit/$(t).c $(UNIT_EXTRA_$(t)) $(COMMON_SRCS) \
	        $(COMMON_LIBS) $(UNIT_LIBS_$(t)) -lcmocka; \
	    echo "== valgrind $(t)"; \
	    valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite \
	        --error-exitcode=1 $(B)/valgrind/$(t);)
	cd tests/integration && VANTAGE_VALGRIND=1 VANTAGE_TEST_TIMEOUT=10 \
	    $(PYTHON) -m pytest -q -p no:cacheprovider -m "not slow and not load and not timing" \
	    -k "not h2" $(PYTEST_ARGS)

# `make install` (DESTDIR for staging): the module into Debian's module
# directory, the binaries into $(PREFIX)/bin, the example configuration
# into /etc/vantage unless one is there already (an edited file is never
# overwritten), and the systemd unit, its paths rewritten for $(PREFIX).
# vantagectl is installed once it is built; vantage-map always (it needs
# nothing but jansson).
PREFIX          ?= /usr/local
NGX_MODULES_DIR ?= /usr/lib/nginx/modules
BINDIR          := $(PREFIX)/bin
UNITDIR         := $(PREFIX)/lib/systemd/system
CONFDIR         := /etc/vantage
DASHDIR         := $(PREFIX)/share/vantage/dashboard
DASH_FILES      := $(wildcard dashboard/*)

install: module worker map install-dashboard
	install -D -m 0644 $(B)/ngx_vantage_module.so \
	    $(DESTDIR)$(NGX_MODULES_DIR)/ngx_vantage_module.so
	install -D -m 0755 $(B)/vantage-worker $(DESTDIR)$(BINDIR)/vantage-worker
	install -D -m 0755 $(B)/vantage-map $(DESTDIR)$(BINDIR)/vantage-map
	if test -f $(B)/vantagectl; then \
	    install -D -m 0755 $(B)/vantagectl $(DESTDIR)$(BINDIR)/vantagectl; \
	fi
	if test -e $(DESTDIR)$(CONFDIR)/worker.conf; then \
	    echo "$(DESTDIR)$(CONFDIR)/worker.conf exists: left as it is"; \
	else \
	    install -D -m 0644 conf/vantage-worker.conf \
	        $(DESTDIR)$(CONFDIR)/worker.conf; \
	fi
	@mkdir -p $(B)
	sed 's|/usr/local/bin/|$(BINDIR)/|g' conf/vantage-worker.service \
	    > $(B)/vantage-worker.service
	install -D -m 0644 $(B)/vantage-worker.service \
	    $(DESTDIR)$(UNITDIR)/vantage-worker.service

# the integration health dashboard's static files, for nginx's alias
install-dashboard:
	install -d -m 0755 $(DESTDIR)$(DASHDIR)
	install -m 0644 $(DASH_FILES) $(DESTDIR)$(DASHDIR)/

# the configuration stays: it may have been edited
uninstall:
	rm -f $(DESTDIR)$(NGX_MODULES_DIR)/ngx_vantage_module.so \
	    $(DESTDIR)$(BINDIR)/vantage-worker $(DESTDIR)$(BINDIR)/vantagectl \
	    $(DESTDIR)$(BINDIR)/vantage-map \
	    $(DESTDIR)$(UNITDIR)/vantage-worker.service
	rm -f $(DASH_FILES:dashboard/%=$(DESTDIR)$(DASHDIR)/%)
	rmdir $(DESTDIR)$(DASHDIR) $(DESTDIR)$(PREFIX)/share/vantage \
	    2>/dev/null || true
	@echo "$(DESTDIR)$(CONFDIR)/worker.conf kept"

bench: deps module worker
	@lua-free-scripts/bench.sh

bench-jobs: deps module worker
	@lua-free-scripts/bench.sh jobs

clean:
	rm -rf $(B)

# libFuzzer targets: `make fuzz` runs each for FUZZ_SECONDS on a scratch
# corpus seeded from tests/fuzz/corpus/<target>/ (kept small, committed);
# crashers land in build/fuzz/crashes/ and, once fixed, belong in
# tests/fuzz/regress/<target>/.  `make fuzz-replay` runs both directories
# through an ASan+UBSan build without libFuzzer.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := fuzz_jwt fuzz_keys fuzz_frame fuzz_map
FUZZ_DEPS    := $(COMMON_SRCS) $(wildcard common/*.h) tests/unit/fixtures.h

$(B)/fuzz/%: tests/fuzz/%.c $(FUZZ_DEPS)
	@mkdir -p $(B)/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -W -Wall -Wno-unused-parameter \
	    -Werror -Icommon -o $@ $< $(COMMON_SRCS) $(COMMON_LIBS)

$(B)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay_main.c $(FUZZ_DEPS)
	@mkdir -p $(B)/fuzz-replay
	$(CC) $(CFLAGS_PLAIN) $(SAN_FLAGS) -o $@ $< tests/fuzz/replay_main.c \
	    $(COMMON_SRCS) $(COMMON_LIBS)

fuzz: $(FUZZ_TARGETS:%=$(B)/fuzz/%)
	@set -e; mkdir -p $(B)/fuzz/crashes; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(B)/fuzz/corpus/$$t tests/fuzz/regress/$$t; \
	    echo "== $$t, $(FUZZ_SECONDS)s"; \
	    $(B)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(B)/fuzz/crashes/$$t- \
	        $(B)/fuzz/corpus/$$t tests/fuzz/corpus/$$t tests/fuzz/regress/$$t; \
	done

fuzz-replay: $(FUZZ_TARGETS:%=$(B)/fuzz-replay/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    $(B)/fuzz-replay/$$t tests/fuzz/corpus/$$t tests/fuzz/regress/$$t; \
	done

# ns per token through the vc_jwt API (tests/bench/microbench_jwt.c), pinned
# to one core; built without sanitizers, with the flags of CFLAGS_PLAIN
BENCH_CPU    ?= 0
BENCH_ARGS   ?= 20

$(B)/bench/microbench_jwt: tests/bench/microbench_jwt.c $(COMMON_SRCS) \
        $(wildcard common/*.h) tests/unit/fixtures.h \
        tests/bench/bench.h
	@mkdir -p $(B)/bench
	$(CC) $(CFLAGS_PLAIN) -o $@ $< $(COMMON_SRCS) $(COMMON_LIBS)

microbench: $(B)/bench/microbench_jwt
	taskset -c $(BENCH_CPU) $(B)/bench/microbench_jwt $(BENCH_ARGS)

# ns per 2 KB response body through vantage_json_transform's path (json_loadb,
# vc_map_apply_doc, json_dump_callback: tests/bench/microbench_transform.c)
# with the five-operation edit of conf/bench; lua-free-scripts/bench.sh
# transform runs it beside the gateway
TRANSFORM_BENCH := conf/bench/transform-5ops.json conf/bench/transform-2k.json \
                   conf/bench/transform-2k.expected.json
TRANSFORM_RUNS  ?= 21

$(B)/bench/microbench_transform: tests/bench/microbench_transform.c \
        $(COMMON_SRCS) $(wildcard common/*.h) tests/bench/bench.h
	@mkdir -p $(B)/bench
	$(CC) $(CFLAGS_PLAIN) -o $@ $< $(COMMON_SRCS) $(COMMON_LIBS)

microbench-transform: $(B)/bench/microbench_transform
	taskset -c $(BENCH_CPU) $(B)/bench/microbench_transform $(TRANSFORM_BENCH) \
	    $(TRANSFORM_RUNS)
