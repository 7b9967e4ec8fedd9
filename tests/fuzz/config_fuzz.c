/* Fuzz the configuration parser: any text gives either a config or errors,
 * never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/settings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	char *const env[] = { NULL };
	struct rh_config cfg;
	struct cfg_errors errs;
	rh_err e = config_load_buffer(&cfg, "fuzz", text, env, &errs);
	if ((e == RH_OK) != (errs.n == 0))
		abort();
	config_fini(&cfg);
	free(text);
	return 0;
}
