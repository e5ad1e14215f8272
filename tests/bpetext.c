/* bpetext.c - see bpetext.h. */
#include "bpetext.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const words[] = {
    "the", "LORD", "And", "It's", "it'S", "I'LL", "don't", "we're", "THEY'VE",
    "she'd", "'all", "x86_64", "C++", "foo_bar", "https://example.org/a?b=c",
    "e-mail", "naïve", "Straße", "café", "Ελληνικά", "русский", "日本語のテキスト",
    "中文字符", "한국어", "עברית", "العربية", "हिन्दी", "ภาษาไทย", "ខ្មែរ", "🦙",
    "🚀", "👨‍👩‍👧", "½", "¾", "²", "①", "٣٤٥", "Ⅻ", "ﬁ", "3.14159", "1,000,000",
    "2024-12-03", "0x1F", "ÀÉÎÕÜ", "ǅemal", "µs", "<tag>", "a.b", "—", "…",
};
static const char *const seps[] = {
    " ", " ", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n", "...", "!!",
    "?", ", ", ";", "'", "\"", "(", ")", " \t ", "\n   ",
};

static uint64_t next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

char *t_bpe_text(const char *kjv_path, size_t target, size_t *len)
{
    FILE *f = fopen(kjv_path, "rb");
    if (!f) return NULL;
    char *buf = malloc(target + 256);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, target, f);
    fclose(f);
    while (n > 0 && buf[n - 1] != '\n') n--; /* whole lines */
    uint64_t s = 20261203;
    while (n < target) {
        char line[256];
        size_t m = 0;
        int k = 3 + (int)(next(&s) % 12);
        for (int i = 0; i < k; i++) {
            char w[64];
            if (next(&s) % 4 == 0) { /* a number of 1..15 digits */
                int d = 1 + (int)(next(&s) % 15);
                for (int j = 0; j < d; j++) w[j] = (char)('0' + next(&s) % 10);
                w[d] = 0;
            } else {
                snprintf(w, sizeof w, "%s", words[next(&s) % (sizeof words / sizeof *words)]);
            }
            const char *sep = seps[next(&s) % (sizeof seps / sizeof *seps)];
            m += (size_t)snprintf(line + m, sizeof line - m, "%s%s", w, sep);
            if (m > 180) break;
        }
        if (n + m + 1 > target) break;
        memcpy(buf + n, line, m);
        n += m;
        buf[n++] = '\n';
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
