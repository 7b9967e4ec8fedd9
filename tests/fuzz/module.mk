# Every tests/fuzz/<name>_fuzz.c defines LLVMFuzzerTestOneInput; its corpus
# lives in tests/fuzz/corpus/<name>/ and runs in `make check`.
FUZZ_SRCS += $(filter-out tests/fuzz/corpus_driver.c,$(sort $(wildcard tests/fuzz/*_fuzz.c)))
