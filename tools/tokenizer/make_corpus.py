#!/usr/bin/env python3
"""Writes tests/data/tokenizer/corpus.txt: the tokenizer test corpus (one case per line).

Deterministic (seeded): rerunning gives the same file. Hand-written lines cover the named
hard cases; generated lines mix scripts, code, numbers, whitespace and emoji at random.
Every line is NFC (tandem, like llama.cpp, does not normalise; Qwen3's tokenizer.json
does, so non-NFC input is out of the comparison's scope) and holds no "\\n" or "\\r" (the
oracle joins lines with \\n, \\r\\n, \\r and \\n\\n\\n to make multi-line cases).

Usage: make_corpus.py [OUT]   (default: tests/data/tokenizer/corpus.txt beside this repo)
"""
import os
import random
import sys
import unicodedata

SEED = 20261128
N_LINES = 2400

HAND = [
    "Hello world", "hello world", "HELLO WORLD", " Hello", "  Hello", "   Hello", "\tHello",
    "It's, I'M, you'RE, they'Ve, she'D, we'LL, he'S, don'T", "'S 'LL 'Re 've 'M 'd 'T",
    "IT'S THE CAT'S TOY, ISN'T IT? WE'LL SEE, THEY'RE HERE.", "o'clock rock'n'roll y'all ma'am",
    "'ſ 'ſt 'K", "l'été d'hiver aujourd'hui", "’s and ‘quoted’ “double” «guillemets» „low“",
    "ied 4 ½ months", "Äpfel Öl Übermut Straße", "naïve café résumé coöperate façade",
    "3.14159 2.71828 1e-10 -0.0 +42 0x1F 0b1010 1_000_000 1,234,567.89",
    "12345678901234567890123456789012345678901234567890",
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "Phone: +1 (555) 010-9999, ISBN 978-3-16-148410-0, 2026-11-28T00:31:00Z",
    "١٢٣٤٥٦٧٨٩٠ ۱۲۳ १२३४ ๑๒๓ 一二三 ①②③ Ⅻ ⅷ ¹²³ ₁₂₃ ½¾",
    "日本語のテキストです。東京は晴れ、気温は２５度。カタカナとひらがな。",
    "中文文本测试：你好，世界！这是一个句子。繁體中文也要測試。",
    "한국어 문장입니다. 안녕하세요, 세계! 띄어쓰기와 받침을 확인합니다.",
    "مرحبا بالعالم! هذه جملة عربية مع تشكيل: بِسْمِ اللَّهِ الرَّحْمَٰنِ الرَّحِيمِ",
    "नमस्ते दुनिया! यह एक हिंदी वाक्य है। क्षत्रिय ज्ञान श्री",
    "Привет, мир! Ёжик в тумане. ΓΕΙΑ σου κόσμε. Ελληνικά",
    "שָׁלוֹם עוֹלָם עִבְרִית", "สวัสดีชาวโลก ภาษาไทย", "ሰላም ዓለም", "Բարեւ աշխարհ", "გამარჯობა",
    "👨‍👩‍👧‍👦 👩🏽‍💻 🏳️‍🌈 🏴‍☠️ 🇯🇵🇺🇸🇩🇪 ❤️‍🔥 🧑🏿‍🚀 👍🏻👍🏼👍🏽👍🏾👍🏿",
    "emoji🙂inside😀words🎉and 🐍python🦀rust",
    "a\u00a0b\u00a0\u00a0c", "x\u2000y\u2001z\u2002w\u2003v\u2009u\u200aт\u202fs\u205fr\u3000q\u1680p",
    "nel\u0085here", "line\u2028sep\u2029para", "vt\x0bff\x0cend", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom",
    "combining: q\u0303 x\u0327 a\u0301\u0323 o\u0308\u0304 n\u0303\u0301 e\u0328\u0301 Z\u0335\u0336",
    "Z̴̡̢̛̖̗̘̙̜̝̞̟̠̤̥̦̩̪̫̬̭̮̯̰̱̲̳̹̺̻̼͇͈͉͍͎̀́̂̃̄̅̆̇̈̉̊̋̌̍̎̏̐̑̒̓̔̽̾̿̀́͂̓̈́͆͊͋͌̕̚ͅ͏͓͔͕͖͙͚͐͑͒͗͛",
    "def f(x):    return x**2  # comment", "    if (a && b || !c) { return; }",
    "for (int i = 0; i < n; ++i) { sum += v[i] * w[i]; }",
    "fn main() -> Result<(), Box<dyn Error>> { println!(\"{:?}\", x); Ok(()) }",
    "const x = async () => { await fetch(`/api/${id}`); };",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<div class=\"row\"><a href='https://example.com/path?q=1&r=2#frag'>link</a></div>",
    "$ ls -la /usr/local/bin | grep -E '^d' && echo \"done\" > /dev/null 2>&1",
    "package main; import \"fmt\"; func main() { fmt.Println(\"hi\") }",
    "#include <vector>\tstd::vector<std::pair<int,int>> v{{1,2},{3,4}};",
    "     ", "\t\t\t", " \t \t ", "a    b     c      d", "trailing spaces    ",
    "<|im_start|>user", "text<|im_end|>more", "<|endoftext|>", "<think>reasoning</think>",
    "<tool_call>{\"name\": \"f\"}</tool_call>", "<|fim_prefix|>def<|fim_suffix|>x<|fim_middle|>",
    "<|im_start|><|im_start|>", "<|im_start", "im_start|>", "< |im_start| >", "<<|im_end|>>",
    "!!!???...,,,;;;:::---___+++===***&&&|||", "…—–‐‑‒―‖‗‘’‚‛“”„‟†‡•‣․‥", "∀x∈ℝ: x²≥0 ∑∫∂√∞≈≠≤≥",
    "Supercalifragilisticexpialidocious" * 8, "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 300, "ab" * 150, " " * 100 + "x", "\t" * 40, "🙂" * 60, "中" * 120, "ـ" * 50,
    "https://www.example.com/a/very/long/path/with-many-segments_and_underscores/and.dots?query=value&other=12345",
]

WORDS_EN = ("the of and to in is you that it he was for on are as with his they I at be this have "
            "from or one had by word but not what all were we when your can said there use an each "
            "which she do how their if will up other about out many then them these so some her "
            "would make like him into time has look two more write go see number no way could people "
            "my than first water been call who oil its now find long down day did get come made may "
            "part tokenizer model inference kernel quantize attention batch stream").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'Ll", "'rE"]
SCRIPTS = {
    "ja": "私 は 日本語 を 勉強 して います 今日 天気 いい ですね カタカナ ひらがな 漢字 東京 大阪 ラーメン",
    "zh": "我们 今天 学习 中文 的 语法 这个 问题 很 有意思 北京 上海 计算机 人工智能 模型",
    "ko": "저는 한국어 를 공부 합니다 오늘 날씨 가 좋네요 서울 부산 컴퓨터 인공지능",
    "ar": "أنا أتعلم اللغة العربية اليوم الطقس جميل القاهرة الرياض حاسوب ذكاء اصطناعي",
    "hi": "मैं हिंदी सीख रहा हूँ आज मौसम अच्छा है दिल्ली मुंबई कंप्यूटर कृत्रिम बुद्धि",
    "ru": "я изучаю русский язык сегодня хорошая погода Москва компьютер интеллект",
    "el": "μαθαίνω ελληνικά σήμερα ο καιρός είναι καλός Αθήνα υπολογιστής",
    "th": "ฉัน เรียน ภาษาไทย วันนี้ อากาศ ดี กรุงเทพ คอมพิวเตอร์",
    "he": "אני לומד עברית היום מזג האוויר טוב ירושלים מחשב",
    "vi": "Tôi học tiếng Việt hôm nay thời tiết đẹp Hà Nội máy tính",
}
EMOJI = ["😀", "🙂", "🎉", "🚀", "👍🏽", "👨‍👩‍👧", "👩‍🔬", "🧑🏻‍🤝‍🧑🏿", "🏳️‍⚧️", "❤️", "🇫🇷", "🇧🇷", "✨", "🔥", "🤖", "🐍"]
SPACES = [" ", "  ", "\t", "\u00a0", "\u2002", "\u2003", "\u2009", "\u3000", "\u202f", "\u205f", "\u0085",
          "\u2028", "\x0b", "\x0c", " \t ", "    ", "\u200b"]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u0323", "\u0327", "\u0331", "\u0335", "\u20d7", "\u0483"]
CODE = [
    "x = [i * 2 for i in range(10) if i % 3 == 0]", "print(f\"{name!r}: {value:>10.3f}\")",
    "std::unique_ptr<Foo> p = std::make_unique<Foo>(42);", "template <typename T> T max(T a, T b);",
    "let mut map: HashMap<String, Vec<u8>> = HashMap::new();", "impl<'a> Iterator for Iter<'a> {",
    "document.querySelectorAll('.item').forEach(el => el.remove());", "export default { name: 'app' }",
    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) {", "if err != nil { return err }",
    "public static void main(String[] args) { System.out.println(args.length); }",
    "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);", "UPDATE t SET v = 'x' WHERE id = 7;",
    "awk '{ s += $3 } END { print s / NR }' data.tsv", "grep -rn \"TODO\" src/ | wc -l",
    "{\"key\": [1, 2.5, true, null, \"str\"], \"nested\": {\"a\": {}}}", "a:\n  - b: 1", "<?php echo $x; ?>",
    "(defun fact (n) (if (<= n 1) 1 (* n (fact (- n 1)))))", "main = putStrLn \"hello\" >> return ()",
    "x <- c(1, 2, 3); mean(x)", "#define MAX(a, b) ((a) > (b) ? (a) : (b))", "@property\n", "//! doc comment",
    "\\begin{equation} E = mc^2 \\end{equation}", "matrix[i][j] += alpha * A[i][k] * B[k][j];",
]


def rand_word(rng):
    r = rng.random()
    if r < 0.55:
        w = rng.choice(WORDS_EN)
    elif r < 0.85:
        w = rng.choice(rng.choice(list(SCRIPTS.values())).split())
    else:
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(1, 30)))
    case = rng.random()
    if case < 0.1:
        w = w.upper()
    elif case < 0.2:
        w = w.capitalize()
    elif case < 0.25:
        w = "".join(c.upper() if rng.random() < 0.5 else c for c in w)
    return w


def gen_line(rng):
    kind = rng.randrange(9)
    parts = []
    if kind == 0:  # prose with contractions
        for _ in range(rng.randint(3, 20)):
            w = rand_word(rng)
            if rng.random() < 0.15:
                w += rng.choice(CONTRACTIONS)
            parts.append(w + rng.choice(["", "", "", ",", ".", "!", "?", ";", ":"]))
        return " ".join(parts)
    if kind == 1:  # one script, natural spacing
        name, text = rng.choice(list(SCRIPTS.items()))
        words = text.split()
        sep = "" if name in ("ja", "zh", "th") and rng.random() < 0.7 else " "
        return sep.join(rng.choice(words) for _ in range(rng.randint(2, 25))) + rng.choice(["", "。", "!", "?", "."])
    if kind == 2:  # code
        line = rng.choice(CODE).replace("\n", "")
        return " " * rng.choice([0, 0, 2, 4, 8]) + line
    if kind == 3:  # numbers
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 200)))
        seps = rng.choice(["", " ", ",", ".", "-", "/"])
        chunks = [digits[i:i + rng.randint(1, 7)] for i in range(0, len(digits), 5)]
        return rng.choice(["", "Total: ", "id=", "#", "v"]) + seps.join(chunks)
    if kind == 4:  # whitespace runs between words
        return "".join(rand_word(rng) + "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 6)))
                       for _ in range(rng.randint(1, 10)))
    if kind == 5:  # emoji
        return "".join(rng.choice(EMOJI) + rng.choice(["", "", " ", rand_word(rng)]) for _ in range(rng.randint(1, 15)))
    if kind == 6:  # combining marks on letters
        out = []
        for _ in range(rng.randint(3, 30)):
            out.append(rng.choice("aeiouqxzmnhAEQXN"))
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                out.append(rng.choice(COMBINING))
            if rng.random() < 0.2:
                out.append(" ")
        return "".join(out)
    if kind == 7:  # long words
        base = rand_word(rng)
        return rng.choice(["", "prefix ", "  "]) + base * rng.randint(5, 80)
    # mixed everything
    pool = [rand_word(rng), rng.choice(EMOJI), rng.choice(CODE).replace("\n", ""), rng.choice(SPACES),
            str(rng.randint(0, 10**12)), rng.choice(list(SCRIPTS.values())).split()[0],
            rng.choice(["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>", "<tool_call>"]),
            rng.choice(CONTRACTIONS)]
    return "".join(rng.choice(pool) + rng.choice(["", " ", "  "]) for _ in range(rng.randint(2, 12)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "tokenizer", "corpus.txt")
    rng = random.Random(SEED)
    lines = list(HAND)
    while len(lines) < N_LINES:
        lines.append(gen_line(rng))
    clean = []
    for line in lines:
        line = unicodedata.normalize("NFC", line.replace("\n", " ").replace("\r", " "))
        if line.strip(" ") or line:
            clean.append(line)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for line in clean:
            f.write(line + "\n")
    print(f"{out}: {len(clean)} lines")


if __name__ == "__main__":
    main()
