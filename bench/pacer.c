// A paced load generator for bench/stream_rate.py: RATE TCP connections per second to
// HOST:PORT for SECONDS, each one an HTTP/1.0 request read to the end (a full handshake and
// teardown), spread over WORKERS processes. Prints the connections made and the rate reached.
//
//   cc -O2 -o pacer pacer.c && ./pacer 127.0.0.1 18080 5000 10 4
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one_connection(const struct sockaddr_in *server) {
    static const char request[] = "GET / HTTP/1.0\r\n\r\n";
    char buffer[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    int ok = connect(fd, (const struct sockaddr *)server, sizeof(*server)) == 0 &&
             write(fd, request, sizeof(request) - 1) == (ssize_t)(sizeof(request) - 1);
    while (ok && read(fd, buffer, sizeof(buffer)) > 0)
        ;
    close(fd);
    return ok;
}

// Connections at an even pace: the n-th starts at start + n / rate, or at once when behind.
static long worker(const struct sockaddr_in *server, double rate, double seconds) {
    double start = now();
    long made = 0;
    for (long n = 0;; n++) {
        double due = start + n / rate;
        if (due - start >= seconds)
            break;
        double wait = due - now();
        if (wait > 0) {
            struct timespec pause = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&pause, NULL);
        }
        made += one_connection(server);
    }
    return made;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT RATE SECONDS WORKERS\n", argv[0]);
        return 2;
    }
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
        fprintf(stderr, "pacer: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int workers = atoi(argv[5]);
    int pipes[2];
    if (rate <= 0 || seconds <= 0 || workers < 1 || pipe(pipes) != 0) {
        fprintf(stderr, "pacer: RATE, SECONDS and WORKERS must be positive\n");
        return 2;
    }
    double start = now();
    for (int w = 0; w < workers; w++) {
        if (fork() == 0) {
            long made = worker(&server, rate / workers, seconds);
            if (write(pipes[1], &made, sizeof(made)) != sizeof(made))
                _exit(1);
            _exit(0);
        }
    }
    long total = 0, made;
    for (int w = 0; w < workers; w++) {
        if (read(pipes[0], &made, sizeof(made)) == sizeof(made))
            total += made;
        wait(NULL);
    }
    printf("%ld connections in %.3f s: %.0f per second\n", total, now() - start,
           total / (now() - start));
    return 0;
}
