/* fsync_probe DIR SECONDS: how long this machine's disk takes to make a
 * write durable, as a database commit does (an 8 KiB write, then
 * fdatasync), over SECONDS in a scratch file in DIR. Prints
 * disk_fsync_{samples,p50_ms,p99_ms,max_ms}.
 *
 * A committed booking waits for such a flush, so one slow flush holds up
 * every commit behind it: on a shared disk a single 50 ms stall in a 5 s
 * window at 500 requests a second is the offer p99 by itself. The
 * dispatch benchmark prints these next to its latencies, to tell the disk
 * from the daemon. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES 500000

static double mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc != 3 || atof(argv[2]) <= 0) {
		fprintf(stderr, "usage: fsync_probe DIR SECONDS\n");
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/fsync_probe.%d", argv[1], (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	unlink(path); /* gone when we are, whatever happens */
	static char block[8192];
	memset(block, 'x', sizeof block);
	double *lat = malloc(MAX_SAMPLES * sizeof *lat);
	if (!lat)
		return 1;
	size_t n = 0;
	double t0 = mono_ms(), window = atof(argv[2]) * 1e3;
	while (n < MAX_SAMPLES && mono_ms() - t0 < window) {
		double a = mono_ms();
		/* 128 blocks over and over, as the WAL reuses its segment's pages */
		if (pwrite(fd, block, sizeof block, (off_t)(n % 128) * (off_t)sizeof block) != (ssize_t)sizeof block ||
		    fdatasync(fd) != 0) {
			perror("fsync_probe");
			return 1;
		}
		lat[n++] = mono_ms() - a;
	}
	close(fd);
	qsort(lat, n, sizeof *lat, cmp_double);
	printf("disk_fsync_samples=%zu\n", n);
	if (n > 0)
		printf("disk_fsync_p50_ms=%.3f\ndisk_fsync_p99_ms=%.3f\ndisk_fsync_max_ms=%.3f\n", lat[n / 2],
		       lat[(size_t)((double)n * 0.99)], lat[n - 1]);
	free(lat);
	return 0;
}
