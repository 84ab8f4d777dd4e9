"""Build the bundled instruction-tuning dataset.

Writes ``playground/datasets/instructions.json``: a JSON array of about 1,200
Alpaca-style records (``instruction``, ``input``, ``output``, ``task``,
``exact``) spread over 26 small task families (arithmetic, unit conversion,
spelling and grammar fixes, capitals, sentiment, sorting, extraction, ...).

All text comes from the word lists and templates in this file; answers are
computed wherever possible, and the fact lists only hold entries with one
well-established answer. ``exact`` is true when a task has a single correct
answer (so exact-match scoring makes sense) and false for open-ended rewrites.

The output is deterministic: everything is drawn from one
``random.Random(seed)`` in a fixed order, nothing depends on set/hash ordering
or the clock, so running the script twice gives byte-identical files.

Usage::

    python scripts/make_dataset.py [--seed 123] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import random
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "playground" / "datasets" / "instructions.json"
DEFAULT_SEED = 123


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def record(instruction: str, input_text: str, output: str, task: str, exact: bool) -> dict:
    """Build one record with the keys in the canonical order."""
    return {
        "instruction": instruction,
        "input": input_text,
        "output": output,
        "task": task,
        "exact": exact,
    }


def collect(n: int, make, max_tries: int = 200) -> list[dict]:
    """Call ``make()`` until ``n`` records with distinct (instruction, input) exist."""
    out: list[dict] = []
    seen: set[tuple[str, str]] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > n * max_tries:
            raise RuntimeError(f"could not make {n} distinct records (got {len(out)})")
        rec = make()
        key = (rec["instruction"], rec["input"])
        if key in seen:
            continue
        seen.add(key)
        out.append(rec)
    return out


def cap(text: str) -> str:
    """Upper-case the first character only."""
    return text[:1].upper() + text[1:]


def unit(value, singular: str, plural: str) -> str:
    return f"{value} {singular if value == 1 else plural}"


ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    "seventeen", "eighteen", "nineteen",
]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(n: int) -> str:
    """English words for 0..100, hyphenating compound tens ("forty-seven")."""
    if n == 100:
        return "one hundred"
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


# Short everyday sentences used by the case-conversion and word-count tasks.
# Tense decides which time phrases may follow; "none" takes no time phrase.
CLAUSES = [
    ("the cat sleeps on the warm sofa", "present"),
    ("my brother plays the guitar", "present"),
    ("our neighbors planted a small apple tree", "past"),
    ("the bus stops right outside the bakery", "present"),
    ("she reads the newspaper with her coffee", "present"),
    ("the children built a fort out of blankets", "past"),
    ("we walked along the river", "past"),
    ("my grandmother bakes fresh bread", "present"),
    ("he repaired the old bicycle", "past"),
    ("the students finished their science project", "past"),
    ("the dog barks at the mail carrier", "present"),
    ("they painted the garden fence white", "past"),
    ("the baby laughed at the funny puppet", "past"),
    ("the farmer sells fresh eggs at the market", "present"),
    ("a strong wind knocked over the sign", "past"),
    ("the chef tasted the soup", "past"),
    ("my friends watched a scary movie", "past"),
    ("the teacher wrote the answers on the board", "past"),
    ("the river flows past the old mill", "none"),
    ("our team won the final match", "past"),
    ("the pilot greeted the passengers", "past"),
    ("the kettle whistled in the kitchen", "past"),
    ("my sister learned to swim", "none"),
    ("the library closes early", "present"),
    ("the birds sing in the tall oak tree", "present"),
    ("grandpa told us a long story", "past"),
    ("the museum opens at nine", "present"),
    ("we cleaned the whole house", "past"),
    ("the waiter brought us two glasses of water", "none"),
    ("my uncle drives a blue truck", "none"),
]
TIME_PHRASES = {
    "present": ["", " every morning", " on weekends", " most days", " in the summer"],
    "past": ["", " last night", " yesterday", " last week", " this morning"],
    "none": [""],
}


def plain_sentence(rng: random.Random) -> str:
    clause, tense = rng.choice(CLAUSES)
    return cap(clause + rng.choice(TIME_PHRASES[tense])) + "."


# ---------------------------------------------------------------------------
# task families
# ---------------------------------------------------------------------------


def arithmetic(rng: random.Random, n: int) -> list[dict]:
    templates = {
        "add": ["What is {a} plus {b}?", "Calculate {a} + {b}.", "Add {a} and {b}.",
                "What is the sum of {a} and {b}?"],
        "sub": ["What is {a} minus {b}?", "Calculate {a} - {b}.", "Subtract {b} from {a}."],
        "mul": ["What is {a} times {b}?", "Calculate {a} × {b}.", "Multiply {a} by {b}.",
                "What is the product of {a} and {b}?"],
        "div": ["What is {a} divided by {b}?", "Calculate {a} ÷ {b}.", "Divide {a} by {b}."],
    }
    symbols = {"add": "+", "sub": "-", "mul": "×", "div": "÷"}
    input_instructions = [
        "Solve the following arithmetic problem.",
        "Compute the value of this expression.",
        "Work out the answer to the calculation below.",
    ]

    def make():
        op = rng.choice(["add", "sub", "mul", "div"])
        if op == "add":
            a, b = rng.randint(2, 500), rng.randint(2, 500)
            result = a + b
        elif op == "sub":
            a = rng.randint(10, 500)
            b = rng.randint(1, a)
            result = a - b
        elif op == "mul":
            a, b = rng.randint(2, 25), rng.randint(2, 15)
            result = a * b
        else:
            b, result = rng.randint(2, 12), rng.randint(2, 25)
            a = b * result
        if rng.random() < 0.15:
            return record(rng.choice(input_instructions), f"{a} {symbols[op]} {b}",
                          str(result), "arithmetic", True)
        return record(rng.choice(templates[op]).format(a=a, b=b), "", str(result),
                      "arithmetic", True)

    return collect(n, make)


def unit_conversion(rng: random.Random, n: int) -> list[dict]:
    # (big singular, big plural, small singular, small plural, factor, max big value)
    pairs = [
        ("kilometer", "kilometers", "meter", "meters", 1000, 50),
        ("meter", "meters", "centimeter", "centimeters", 100, 30),
        ("centimeter", "centimeters", "millimeter", "millimeters", 10, 80),
        ("kilogram", "kilograms", "gram", "grams", 1000, 40),
        ("liter", "liters", "milliliter", "milliliters", 1000, 20),
        ("hour", "hours", "minute", "minutes", 60, 24),
        ("minute", "minutes", "second", "seconds", 60, 30),
        ("day", "days", "hour", "hours", 24, 14),
        ("week", "weeks", "day", "days", 7, 20),
        ("year", "years", "month", "months", 12, 30),
        ("foot", "feet", "inch", "inches", 12, 20),
        ("yard", "yards", "foot", "feet", 3, 40),
    ]
    templates = [
        "Convert {v} to {to}.",
        "How many {to} are in {v}?",
        "Express {v} in {to}.",
    ]
    temp_templates = [
        "Convert {v} degrees {src} to {dst}.",
        "What is {v} degrees {src} in degrees {dst}?",
    ]

    def make():
        if rng.random() < 0.15:
            celsius = rng.randrange(-40, 101, 5)  # multiples of 5 give whole Fahrenheit values
            fahrenheit = celsius * 9 // 5 + 32
            if rng.random() < 0.6:
                v, src, dst, result = celsius, "Celsius", "Fahrenheit", fahrenheit
            else:
                v, src, dst, result = fahrenheit, "Fahrenheit", "Celsius", celsius
            return record(rng.choice(temp_templates).format(v=v, src=src, dst=dst), "",
                          f"{result} degrees {dst}", "unit_conversion", True)
        big_s, big_p, small_s, small_p, factor, top = rng.choice(pairs)
        big = rng.randint(1, top)
        small = big * factor
        if rng.random() < 0.65:  # big -> small
            given, to, result = unit(big, big_s, big_p), small_p, unit(small, small_s, small_p)
        else:  # small -> big, always a whole number
            given, to, result = unit(small, small_s, small_p), big_p, unit(big, big_s, big_p)
        return record(rng.choice(templates).format(v=given, to=to), "", result,
                      "unit_conversion", True)

    return collect(n, make)


# correct spelling, common misspelling, optional sentence with "{}" for the word
SPELLINGS = [
    ("receive", "recieve", "Did you {} my message this morning?"),
    ("separate", "seperate", "Please keep the receipts in a {} folder."),
    ("definitely", "definately", "We will {} visit the lake next summer."),
    ("accommodate", "accomodate", "The hotel can {} up to forty guests."),
    ("necessary", "neccessary", "Is it {} to bring a passport?"),
    ("embarrass", "embarass", "Please do not {} me in front of my friends."),
    ("believe", "beleive", "I can hardly {} how fast the year went by."),
    ("government", "goverment", "The {} announced a new holiday."),
    ("environment", "enviroment", "We should protect the {} for future generations."),
    ("tomorrow", "tommorow", "The shop opens again {} morning."),
    ("beginning", "begining", "The {} of the film was very slow."),
    ("argument", "arguement", "Their {} lasted for hours."),
    ("business", "buisness", "She started her own {} last year."),
    ("friend", "freind", "My best {} lives next door."),
    ("weird", "wierd", "The old house made a {} noise at night."),
    ("library", "libary", "I returned the books to the {} yesterday."),
    ("address", "adress", "Please write your {} on the envelope."),
    ("across", "accross", "The children ran {} the field."),
    ("committee", "commitee", "The {} will meet again on Thursday."),
    ("foreign", "foriegn", "He enjoys learning {} languages."),
    ("grammar", "grammer", "The teacher corrected my {} mistakes."),
    ("guarantee", "garantee", "The shop offers a two-year {} on all laptops."),
    ("knowledge", "knowlege", "Reading widens your {} of the world."),
    ("occasion", "occassion", "We saved the cake for a special {}."),
    ("recommend", "reccomend", "Can you {} a good restaurant nearby?"),
    ("rhythm", "rythm", "The drummer kept a steady {}."),
    ("surprise", "suprise", "We planned a {} party for her birthday."),
    ("until", "untill", "Please wait here {} the doctor calls you."),
    ("piece", "peice", "Would you like a {} of cake?"),
    ("because", "becuase", "We stayed inside {} it was raining."),
    ("different", "diffrent", "The twins have very {} hobbies."),
    ("beautiful", "beatiful", "The view from the hill was {}."),
    ("ceiling", "cieling", "There is a spider on the {}."),
    ("achieve", "acheive", "Hard work helped her {} her goals."),
    ("immediately", "immediatly", "Please call me {} when you arrive."),
    ("pronunciation", "pronounciation", "His {} of French words is excellent."),
    ("tongue", "tounge", "The soup was so hot that I burned my {}."),
    ("vacuum", "vaccum", "I need to {} the living room carpet."),
    ("privilege", "priviledge", "It is a {} to work with such a talented team."),
    ("strength", "strenght", "Lifting weights builds {}."),
    ("twelfth", "twelth", "Today is the {} day of our trip."),
    ("calendar", "calander", "I marked the date on my {}."),
    ("restaurant", "restaraunt", "The new {} serves excellent pasta."),
    ("Wednesday", "Wensday", "The meeting is on {} afternoon."),
    ("February", "Febuary", "Her birthday is in {}."),
    ("successful", "succesful", "The launch of the product was very {}."),
    ("existence", "existance", "Scientists debated the {} of the ancient city."),
    ("disappear", "dissapear", "The magician made the coin {}."),
]


def spelling_fix(rng: random.Random, n: int) -> list[dict]:
    word_instructions = [
        "Correct the spelling of the following word.",
        "The word below is misspelled. Write it correctly.",
        "Fix the spelling mistake in this word.",
    ]
    question_templates = [
        "How do you correctly spell '{}'?",
        "What is the correct spelling of '{}'?",
    ]
    sentence_instructions = [
        "Fix the spelling error in the following sentence.",
        "Correct the misspelled word in this sentence and rewrite the sentence.",
        "The sentence below contains one spelling mistake. Rewrite it with the mistake fixed.",
    ]

    def make():
        correct, wrong, sentence = rng.choice(SPELLINGS)
        kind = rng.random()
        if kind < 0.45:
            return record(rng.choice(sentence_instructions), sentence.format(wrong),
                          sentence.format(correct), "spelling_fix", True)
        if kind < 0.75:
            return record(rng.choice(word_instructions), wrong, correct, "spelling_fix", True)
        return record(rng.choice(question_templates).format(wrong), "", correct,
                      "spelling_fix", True)

    return collect(n, make)


def grammar_fix(rng: random.Random, n: int) -> list[dict]:
    singular = ["My sister", "The teacher", "He", "She", "Our neighbor", "The little boy",
                "My friend", "Anna", "The doctor", "My father"]
    plural = ["My parents", "They", "The students", "We", "The children", "Our neighbors",
              "Tom and Lisa", "My cousins"]
    # (base form, third person singular, rest of the sentence)
    verbs = [
        ("walk", "walks", "to school every day"),
        ("play", "plays", "football on Saturdays"),
        ("read", "reads", "a book before bed"),
        ("drink", "drinks", "tea in the afternoon"),
        ("watch", "watches", "the news every evening"),
        ("go", "goes", "to the gym after work"),
        ("cook", "cooks", "dinner on Sundays"),
        ("visit", "visits", "the museum once a month"),
        ("wash", "washes", "the dishes after lunch"),
        ("study", "studies", "English in the evening"),
        ("have", "has", "a big garden"),
        ("live", "lives", "near the park"),
        ("like", "likes", "fresh bread"),
        ("carry", "carries", "a red umbrella"),
    ]
    be_rest = ["tired after the long trip", "very happy today", "late for the meeting",
               "ready for the exam", "in the garden"]
    # (noun, correct article, sentence with "{}" for "article noun")
    article_frames = [
        (["apple", "orange", "egg", "umbrella", "envelope", "onion"],
         ["book", "pencil", "cup", "banana", "lemon", "key"],
         "There is {} on the table."),
        (["artist", "engineer", "actor", "architect", "astronaut", "editor"],
         ["teacher", "doctor", "pilot", "nurse", "lawyer", "baker"],
         "She wants to become {} one day."),
        (["elephant", "owl", "eagle", "ostrich", "iguana"],
         ["lion", "tiger", "giraffe", "zebra", "penguin", "bear"],
         "We saw {} at the zoo."),
    ]
    instructions = [
        "Correct the grammatical error in the following sentence.",
        "Fix the grammar in this sentence.",
        "The sentence below contains a grammar mistake. Rewrite it correctly.",
        "Rewrite the following sentence with correct grammar.",
    ]

    def make():
        kind = rng.random()
        if kind < 0.5:  # subject-verb agreement with a lexical verb
            base, third, rest = rng.choice(verbs)
            if rng.random() < 0.5:
                subject = rng.choice(singular)
                wrong, right = f"{subject} {base} {rest}.", f"{subject} {third} {rest}."
            else:
                subject = rng.choice(plural)
                wrong, right = f"{subject} {third} {rest}.", f"{subject} {base} {rest}."
        elif kind < 0.7:  # is / are
            rest = rng.choice(be_rest)
            if rng.random() < 0.5:
                subject = rng.choice([s for s in singular if s not in ("He", "She")])
                wrong, right = f"{subject} are {rest}.", f"{subject} is {rest}."
            else:
                subject = rng.choice([p for p in plural if p != "We"])
                wrong, right = f"{subject} is {rest}.", f"{subject} are {rest}."
        else:  # a / an
            vowel_nouns, consonant_nouns, frame = rng.choice(article_frames)
            if rng.random() < 0.5:
                noun = rng.choice(vowel_nouns)
                wrong, right = frame.format(f"a {noun}"), frame.format(f"an {noun}")
            else:
                noun = rng.choice(consonant_nouns)
                wrong, right = frame.format(f"an {noun}"), frame.format(f"a {noun}")
        return record(rng.choice(instructions), wrong, right, "grammar_fix", True)

    return collect(n, make)


PLURALS = [
    # irregular
    ("child", "children"), ("man", "men"), ("woman", "women"), ("mouse", "mice"),
    ("goose", "geese"), ("foot", "feet"), ("tooth", "teeth"), ("person", "people"),
    ("ox", "oxen"), ("sheep", "sheep"), ("deer", "deer"), ("leaf", "leaves"),
    ("knife", "knives"), ("wife", "wives"), ("wolf", "wolves"), ("half", "halves"),
    ("life", "lives"), ("loaf", "loaves"), ("shelf", "shelves"), ("thief", "thieves"),
    ("calf", "calves"), ("potato", "potatoes"), ("tomato", "tomatoes"), ("hero", "heroes"),
    ("echo", "echoes"), ("crisis", "crises"), ("analysis", "analyses"), ("thesis", "theses"),
    ("phenomenon", "phenomena"), ("criterion", "criteria"), ("louse", "lice"),
    # regular, with the usual spelling rules
    ("box", "boxes"), ("bus", "buses"), ("church", "churches"), ("dish", "dishes"),
    ("fox", "foxes"), ("glass", "glasses"), ("watch", "watches"), ("baby", "babies"),
    ("city", "cities"), ("party", "parties"), ("story", "stories"), ("lady", "ladies"),
    ("day", "days"), ("key", "keys"), ("toy", "toys"), ("boy", "boys"), ("cat", "cats"),
    ("book", "books"), ("tree", "trees"), ("house", "houses"), ("chair", "chairs"),
    ("river", "rivers"), ("bird", "birds"), ("pencil", "pencils"), ("window", "windows"),
    ("bottle", "bottles"), ("brush", "brushes"), ("class", "classes"), ("wish", "wishes"),
    ("roof", "roofs"), ("chief", "chiefs"), ("piano", "pianos"), ("photo", "photos"),
]


def plural(rng: random.Random, n: int) -> list[dict]:
    templates = [
        "What is the plural of '{}'?",
        "Give the plural form of the noun '{}'.",
        "Write the plural of the word '{}'.",
    ]

    def make():
        word, plural_form = rng.choice(PLURALS)
        return record(rng.choice(templates).format(word), "", plural_form, "plural", True)

    return collect(n, make)


PAST_TENSES = [
    # irregular
    ("go", "went"), ("eat", "ate"), ("see", "saw"), ("take", "took"), ("write", "wrote"),
    ("drive", "drove"), ("run", "ran"), ("swim", "swam"), ("sing", "sang"), ("drink", "drank"),
    ("begin", "began"), ("give", "gave"), ("come", "came"), ("know", "knew"), ("grow", "grew"),
    ("throw", "threw"), ("fly", "flew"), ("draw", "drew"), ("break", "broke"),
    ("speak", "spoke"), ("choose", "chose"), ("freeze", "froze"), ("steal", "stole"),
    ("ride", "rode"), ("fall", "fell"), ("forget", "forgot"), ("buy", "bought"),
    ("bring", "brought"), ("think", "thought"), ("teach", "taught"), ("catch", "caught"),
    ("fight", "fought"), ("sell", "sold"), ("tell", "told"), ("find", "found"),
    ("make", "made"), ("have", "had"), ("say", "said"), ("pay", "paid"), ("leave", "left"),
    ("feel", "felt"), ("keep", "kept"), ("sleep", "slept"), ("meet", "met"), ("send", "sent"),
    ("spend", "spent"), ("build", "built"), ("lose", "lost"), ("hold", "held"),
    ("stand", "stood"), ("understand", "understood"), ("sit", "sat"), ("win", "won"),
    ("hear", "heard"), ("cut", "cut"), ("put", "put"), ("hit", "hit"), ("shut", "shut"),
    ("cost", "cost"), ("become", "became"), ("do", "did"), ("bite", "bit"), ("hide", "hid"),
    ("shake", "shook"), ("wear", "wore"), ("lead", "led"), ("feed", "fed"),
    ("dig", "dug"),
    # regular, with the usual spelling rules
    ("walk", "walked"), ("play", "played"), ("jump", "jumped"), ("cook", "cooked"),
    ("clean", "cleaned"), ("open", "opened"), ("watch", "watched"), ("help", "helped"),
    ("visit", "visited"), ("paint", "painted"), ("finish", "finished"), ("listen", "listened"),
    ("need", "needed"), ("live", "lived"), ("dance", "danced"), ("smile", "smiled"),
    ("arrive", "arrived"), ("study", "studied"), ("carry", "carried"), ("try", "tried"),
    ("cry", "cried"), ("hurry", "hurried"), ("stop", "stopped"), ("plan", "planned"),
    ("drop", "dropped"), ("shop", "shopped"), ("hug", "hugged"), ("clap", "clapped"),
    ("enjoy", "enjoyed"), ("stay", "stayed"),
]


def past_tense(rng: random.Random, n: int) -> list[dict]:
    templates = [
        "What is the past tense of '{}'?",
        "Give the simple past form of the verb '{}'.",
        "Write the past tense of the verb '{}'.",
    ]

    def make():
        verb, past = rng.choice(PAST_TENSES)
        return record(rng.choice(templates).format(verb), "", past, "past_tense", True)

    return collect(n, make)


# Pairs with one clearly dominant opposite (ambiguous words such as "light" or
# "short" are left out).
ANTONYMS = [
    ("hot", "cold"), ("cold", "hot"), ("up", "down"), ("down", "up"), ("left", "right"),
    ("day", "night"), ("night", "day"), ("true", "false"), ("false", "true"),
    ("inside", "outside"), ("outside", "inside"), ("above", "below"), ("below", "above"),
    ("before", "after"), ("after", "before"), ("north", "south"), ("south", "north"),
    ("east", "west"), ("west", "east"), ("push", "pull"), ("pull", "push"), ("buy", "sell"),
    ("sell", "buy"), ("full", "empty"), ("empty", "full"), ("wet", "dry"), ("dry", "wet"),
    ("young", "old"), ("fast", "slow"), ("slow", "fast"), ("early", "late"), ("late", "early"),
    ("tall", "short"), ("long", "short"), ("rich", "poor"), ("poor", "rich"), ("strong", "weak"),
    ("weak", "strong"), ("first", "last"), ("always", "never"), ("never", "always"),
    ("thick", "thin"), ("clean", "dirty"), ("dirty", "clean"), ("question", "answer"),
    ("friend", "enemy"), ("enemy", "friend"), ("entrance", "exit"), ("exit", "entrance"),
    ("increase", "decrease"), ("decrease", "increase"), ("maximum", "minimum"),
    ("minimum", "maximum"), ("include", "exclude"), ("exclude", "include"),
    ("import", "export"), ("export", "import"), ("visible", "invisible"),
    ("possible", "impossible"), ("sunrise", "sunset"), ("sunset", "sunrise"),
    ("asleep", "awake"), ("awake", "asleep"), ("alive", "dead"), ("dead", "alive"),
    ("forward", "backward"), ("top", "bottom"), ("bottom", "top"), ("success", "failure"),
    ("failure", "success"), ("victory", "defeat"), ("defeat", "victory"),
    ("remember", "forget"), ("forget", "remember"), ("smooth", "rough"), ("cheap", "expensive"),
    ("expensive", "cheap"), ("honest", "dishonest"), ("agree", "disagree"),
    ("disagree", "agree"), ("appear", "disappear"), ("disappear", "appear"),
    ("lock", "unlock"), ("unlock", "lock"), ("wide", "narrow"), ("narrow", "wide"),
    ("deep", "shallow"), ("shallow", "deep"), ("safe", "dangerous"), ("dangerous", "safe"),
    ("plus", "minus"), ("minus", "plus"), ("positive", "negative"), ("negative", "positive"),
    ("borrow", "lend"), ("lend", "borrow"), ("whisper", "shout"),
]


def antonym(rng: random.Random, n: int) -> list[dict]:
    templates = [
        "What is the opposite of '{}'?",
        "Give an antonym for the word '{}'.",
        "Name the antonym of '{}'.",
    ]

    def make():
        word, opposite = rng.choice(ANTONYMS)
        return record(rng.choice(templates).format(word), "", opposite, "antonym", True)

    return collect(n, make)


SYNONYMS = [
    ("big", ["large", "huge"]), ("small", ["little", "tiny"]), ("happy", ["glad", "cheerful"]),
    ("quick", ["fast", "rapid"]), ("begin", ["start", "commence"]), ("end", ["finish", "conclude"]),
    ("smart", ["intelligent", "clever"]), ("angry", ["mad", "furious"]),
    ("beautiful", ["pretty", "lovely"]), ("difficult", ["hard", "challenging"]),
    ("easy", ["simple", "effortless"]), ("buy", ["purchase", "acquire"]),
    ("help", ["assist", "aid"]), ("choose", ["select", "pick"]), ("answer", ["reply", "response"]),
    ("shout", ["yell", "scream"]), ("rich", ["wealthy", "affluent"]), ("scared", ["afraid", "frightened"]),
    ("sad", ["unhappy", "miserable"]), ("quiet", ["silent", "hushed"]), ("ill", ["sick", "unwell"]),
    ("gift", ["present"]), ("rock", ["stone"]), ("jump", ["leap", "hop"]), ("fix", ["repair", "mend"]),
    ("often", ["frequently"]), ("maybe", ["perhaps", "possibly"]), ("journey", ["trip", "voyage"]),
    ("error", ["mistake"]), ("huge", ["enormous", "gigantic"]), ("strange", ["odd", "unusual"]),
    ("tired", ["exhausted", "weary"]), ("funny", ["amusing", "humorous"]), ("brave", ["courageous", "bold"]),
    ("cold", ["chilly", "freezing"]), ("speak", ["talk"]),
    ("car", ["automobile", "vehicle"]), ("shut", ["close"]), ("fear", ["fright", "terror"]),
]


def synonym(rng: random.Random, n: int) -> list[dict]:
    one_templates = [
        "Give a synonym for '{}'.",
        "What is another word for '{}'?",
        "Suggest a word that means the same as '{}'.",
    ]

    def make():
        word, options = rng.choice(SYNONYMS)
        if len(options) > 1 and rng.random() < 0.3:
            return record(f"List two synonyms for the word '{word}'.", "",
                          f"{options[0].capitalize()} and {options[1]}.", "synonym", False)
        choice = rng.choice(options)
        answer = rng.choice([f"A synonym for '{word}' is '{choice}'.", cap(choice)])
        return record(rng.choice(one_templates).format(word), "", answer, "synonym", False)

    return collect(n, make)


# (country as used in a question, capital, country usable as a bare answer)
CAPITALS = [
    ("France", "Paris", True), ("Germany", "Berlin", True), ("Italy", "Rome", True),
    ("Spain", "Madrid", True), ("Portugal", "Lisbon", True), ("the United Kingdom", "London", False),
    ("Ireland", "Dublin", True), ("Japan", "Tokyo", True), ("China", "Beijing", True),
    ("India", "New Delhi", True), ("Russia", "Moscow", True), ("Canada", "Ottawa", True),
    ("Australia", "Canberra", True), ("Mexico", "Mexico City", True), ("Brazil", "Brasília", True),
    ("Argentina", "Buenos Aires", True), ("Egypt", "Cairo", True), ("Kenya", "Nairobi", True),
    ("Greece", "Athens", True), ("Norway", "Oslo", True), ("Sweden", "Stockholm", True),
    ("Finland", "Helsinki", True), ("Denmark", "Copenhagen", True), ("Poland", "Warsaw", True),
    ("Austria", "Vienna", True), ("Hungary", "Budapest", True), ("Belgium", "Brussels", True),
    ("South Korea", "Seoul", True), ("Thailand", "Bangkok", True), ("Vietnam", "Hanoi", True),
    ("Turkey", "Ankara", True), ("Iran", "Tehran", True), ("Iraq", "Baghdad", True),
    ("Peru", "Lima", True), ("Chile", "Santiago", True), ("Cuba", "Havana", True),
    ("New Zealand", "Wellington", True), ("the Philippines", "Manila", False),
    ("Morocco", "Rabat", True), ("Nigeria", "Abuja", True), ("Saudi Arabia", "Riyadh", True),
    ("Pakistan", "Islamabad", True), ("Bangladesh", "Dhaka", True),
    ("the United States", "Washington, D.C.", False), ("Ethiopia", "Addis Ababa", True),
    ("Ghana", "Accra", True), ("Venezuela", "Caracas", True), ("Romania", "Bucharest", True),
    ("Bulgaria", "Sofia", True), ("Croatia", "Zagreb", True), ("Serbia", "Belgrade", True),
    ("Estonia", "Tallinn", True), ("Latvia", "Riga", True), ("Lithuania", "Vilnius", True),
    ("Nepal", "Kathmandu", True), ("Afghanistan", "Kabul", True), ("Syria", "Damascus", True),
    ("Lebanon", "Beirut", True), ("Jordan", "Amman", True), ("Qatar", "Doha", True),
]


def capital_city(rng: random.Random, n: int) -> list[dict]:
    templates = [
        "What is the capital of {}?",
        "Name the capital city of {}.",
        "Which city is the capital of {}?",
    ]
    reverse_templates = [
        "{} is the capital of which country?",
        "Which country has {} as its capital?",
    ]

    def make():
        country, capital, bare = rng.choice(CAPITALS)
        if bare and rng.random() < 0.25:
            return record(rng.choice(reverse_templates).format(capital), "", country,
                          "capital_city", True)
        return record(rng.choice(templates).format(country), "", capital, "capital_city", True)

    return collect(n, make)


ELEMENTS = [
    ("hydrogen", "H"), ("helium", "He"), ("lithium", "Li"), ("beryllium", "Be"), ("boron", "B"),
    ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"), ("fluorine", "F"), ("neon", "Ne"),
    ("sodium", "Na"), ("magnesium", "Mg"), ("silicon", "Si"), ("phosphorus", "P"),
    ("chlorine", "Cl"), ("argon", "Ar"), ("potassium", "K"), ("calcium", "Ca"),
    ("titanium", "Ti"), ("chromium", "Cr"), ("manganese", "Mn"), ("iron", "Fe"), ("cobalt", "Co"),
    ("nickel", "Ni"), ("copper", "Cu"), ("zinc", "Zn"), ("bromine", "Br"), ("krypton", "Kr"),
    ("silver", "Ag"), ("tin", "Sn"), ("iodine", "I"), ("xenon", "Xe"), ("barium", "Ba"),
    ("tungsten", "W"), ("platinum", "Pt"), ("gold", "Au"), ("mercury", "Hg"), ("lead", "Pb"),
    ("radon", "Rn"), ("radium", "Ra"), ("uranium", "U"),
]


def chemical_symbol(rng: random.Random, n: int) -> list[dict]:
    templates = [
        "What is the chemical symbol for {}?",
        "Give the chemical symbol of the element {}.",
        "Which symbol represents {} on the periodic table?",
    ]
    reverse_templates = [
        "Which chemical element has the symbol {}?",
        "What element does the chemical symbol '{}' stand for?",
    ]

    def make():
        name, symbol = rng.choice(ELEMENTS)
        if rng.random() < 0.35:
            return record(rng.choice(reverse_templates).format(symbol), "", name.capitalize(),
                          "chemical_symbol", True)
        return record(rng.choice(templates).format(name), "", symbol, "chemical_symbol", True)

    return collect(n, make)


def sentiment(rng: random.Random, n: int) -> list[dict]:
    countable = ["movie", "hotel", "meal", "concert", "book", "phone", "museum tour",
                 "hiking trip", "play", "pizza", "laptop"]
    uncountable = ["service", "coffee", "customer support"]
    words = {
        "positive": (["excellent", "wonderful", "fantastic", "delightful", "superb", "outstanding"],
                     ["I would definitely recommend it", "it exceeded my expectations",
                      "it was worth every penny", "I am really glad I chose it",
                      "I would happily pay for it again"]),
        "negative": (["terrible", "awful", "disappointing", "horrible", "dreadful", "unpleasant"],
                     ["I would not recommend it to anyone", "it was a complete waste of money",
                      "I regret choosing it", "it fell far short of my expectations",
                      "I want my money back"]),
    }
    frames = [
        "The {thing} was {adj}, and {clause}.",
        "Honestly, the {thing} was {adj}. {Clause}.",
    ]
    countable_frame = "What a {adj} {thing}! {Clause}."  # needs a countable noun
    instructions = [
        "Classify the sentiment of the following review as positive or negative.",
        "Is the sentiment of this text positive or negative?",
        "Determine whether the following customer review is positive or negative.",
    ]

    def make():
        label = rng.choice(["positive", "negative"])
        adjectives, clauses = words[label]
        clause = rng.choice(clauses)
        adj = rng.choice(adjectives)
        if rng.random() < 0.3:
            frame, thing = countable_frame, rng.choice(countable)
        else:
            frame, thing = rng.choice(frames), rng.choice(countable + uncountable)
        text = frame.format(thing=thing, adj=adj, clause=clause, Clause=cap(clause))
        if adj[0] in "aeiou":
            text = text.replace("What a ", "What an ")
        return record(rng.choice(instructions), text, label.capitalize(), "sentiment", True)

    return collect(n, make)


def even_odd(rng: random.Random, n: int) -> list[dict]:
    def make():
        number = rng.randint(1, 999)
        is_even = number % 2 == 0
        kind = rng.randrange(3)
        if kind == 0:
            return record(f"Is {number} even or odd?", "", "Even" if is_even else "Odd",
                          "even_odd", True)
        if kind == 1:
            return record(f"Is the number {number} odd or even?", "",
                          "Even" if is_even else "Odd", "even_odd", True)
        parity = rng.choice(["even", "odd"])
        answer = "Yes" if (parity == "even") == is_even else "No"
        return record(f"Is {number} an {parity} number? Answer yes or no.", "", answer,
                      "even_odd", True)

    return collect(n, make)


def number_words(rng: random.Random, n: int) -> list[dict]:
    to_words = [
        "Write the number {} in words.",
        "How do you spell the number {} in English words?",
        "Spell out {} in words.",
    ]
    to_digits = [
        "Write '{}' as a number using digits.",
        "Convert the words '{}' into digits.",
    ]

    def make():
        number = rng.randint(0, 100)
        words = number_to_words(number)
        if rng.random() < 0.3:
            return record(rng.choice(to_digits).format(words), "", str(number), "number_words", True)
        return record(rng.choice(to_words).format(number), "", words, "number_words", True)

    return collect(n, make)


def sort_numbers(rng: random.Random, n: int) -> list[dict]:
    ascending = ["Sort the following numbers in ascending order.",
                 "Arrange these numbers from smallest to largest."]
    descending = ["Sort the following numbers in descending order.",
                  "Arrange these numbers from largest to smallest."]
    inline_asc = "Sort these numbers from smallest to largest: {}."
    inline_desc = "Sort these numbers from largest to smallest: {}."

    def make():
        numbers = rng.sample(range(1, 200), rng.randint(4, 7))
        descending_order = rng.random() < 0.4
        ordered = sorted(numbers, reverse=descending_order)
        given = ", ".join(map(str, numbers))
        answer = ", ".join(map(str, ordered))
        if rng.random() < 0.25:
            template = inline_desc if descending_order else inline_asc
            return record(template.format(given), "", answer, "sort_numbers", True)
        instruction = rng.choice(descending if descending_order else ascending)
        return record(instruction, given, answer, "sort_numbers", True)

    return collect(n, make)


SORT_WORDS = [
    "apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum", "melon",
    "river", "mountain", "forest", "desert", "valley", "island", "ocean", "canyon",
    "guitar", "piano", "violin", "drum", "flute", "trumpet", "harp",
    "tiger", "zebra", "otter", "rabbit", "eagle", "whale", "koala", "panda", "horse",
    "chair", "table", "lamp", "shelf", "sofa", "window", "carpet", "mirror",
]


def sort_words(rng: random.Random, n: int) -> list[dict]:
    instructions = [
        "Sort the following words alphabetically.",
        "Arrange these words in alphabetical order.",
        "Put the following list of words in alphabetical order.",
    ]

    def make():
        words = rng.sample(SORT_WORDS, rng.randint(4, 6))
        given, answer = ", ".join(words), ", ".join(sorted(words))
        if rng.random() < 0.2:
            return record(f"Put these words in alphabetical order: {given}.", "", answer,
                          "sort_words", True)
        return record(rng.choice(instructions), given, answer, "sort_words", True)

    return collect(n, make)


def count_words(rng: random.Random, n: int) -> list[dict]:
    instructions = [
        "Count the number of words in the following sentence.",
        "How many words are in this sentence?",
        "Tell me how many words the sentence below contains.",
    ]

    def make():
        sentence = plain_sentence(rng)
        answer = str(len(sentence.split()))
        if rng.random() < 0.3:
            return record(f'Count the words in this sentence: "{sentence}"', "", answer,
                          "count_words", True)
        return record(rng.choice(instructions), sentence, answer, "count_words", True)

    return collect(n, make)


COUNT_LETTER_WORDS = [
    "elephant", "banana", "referee", "committee", "balloon", "library", "strawberry",
    "bookkeeper", "coffee", "assessment", "parallel", "tomorrow", "pepper", "giraffe",
    "butterfly", "cinnamon", "umbrella", "possession", "necessary", "kangaroo", "pineapple",
    "chocolate", "success", "address", "grasshopper", "television", "beautiful", "rhythm",
    "window", "teacher", "mountain", "alphabet", "breakfast", "hippopotamus", "bubble",
]


def count_letters(rng: random.Random, n: int) -> list[dict]:
    length_templates = [
        "How many letters are in the word '{w}'?",
        "Count the letters in the word '{w}'.",
    ]
    occurrence_templates = [
        "How many times does the letter '{c}' appear in the word '{w}'?",
        "Count how many times the letter '{c}' occurs in '{w}'.",
    ]

    def make():
        word = rng.choice(COUNT_LETTER_WORDS)
        if rng.random() < 0.5:
            return record(rng.choice(length_templates).format(w=word), "", str(len(word)),
                          "count_letters", True)
        letter = rng.choice(sorted(set(word)))
        return record(rng.choice(occurrence_templates).format(c=letter, w=word), "",
                      str(word.count(letter)), "count_letters", True)

    return collect(n, make)


def case_conversion(rng: random.Random, n: int) -> list[dict]:
    def make():
        sentence = plain_sentence(rng)
        kind = rng.randrange(3)
        if kind == 0:
            instruction = rng.choice(["Convert the following text to uppercase.",
                                      "Rewrite this sentence in all capital letters."])
            return record(instruction, sentence, sentence.upper(), "case_conversion", True)
        if kind == 1:
            given = rng.choice([sentence.upper(), " ".join(cap(w) for w in sentence.split())])
            instruction = rng.choice(["Convert the following text to lowercase.",
                                      "Rewrite this sentence using only lowercase letters."])
            return record(instruction, given, given.lower(), "case_conversion", True)
        given = sentence.lower()
        instruction = rng.choice([
            "Capitalize the first letter of every word in the following text.",
            "Convert the text below to title case, capitalizing every word.",
        ])
        return record(instruction, given, " ".join(cap(w) for w in given.split()),
                      "case_conversion", True)

    return collect(n, make)


FIRST_NAMES = ["Maria", "James", "Aisha", "Daniel", "Sofia", "Liam", "Olivia", "Noah", "Fatima",
               "Lucas", "Emma", "Hiro", "Grace", "Omar", "Nina", "Peter", "Laura", "Samuel", "Elena"]
LAST_NAMES = ["Lopez", "Carter", "Khan", "Novak", "Rossi", "Walsh", "Tanaka", "Berg", "Ortiz",
              "Fischer", "Patel", "Murphy", "Silva", "Jensen", "Moreau"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def extraction(rng: random.Random, n: int) -> list[dict]:
    kinds = {
        "email": (
            ["Extract the email address from the following text.",
             "Find the email address mentioned in the sentence below.",
             "What email address appears in this text?"],
            ["You can reach me at {} if you have any questions.",
             "Please send the signed contract to {} by Friday.",
             "For support, write to {} and include your order number.",
             "Our new contact address is {}.",
             "If the link does not work, email {} for help."],
        ),
        "date": (
            ["Extract the date from the following sentence.",
             "What date is mentioned in this text?",
             "Find the date in the sentence below."],
            ["The meeting has been moved to {}.",
             "Our store will reopen on {} after the renovation.",
             "She signed the lease on {}.",
             "The festival starts on {} and lasts a week.",
             "Applications must be submitted before {}."],
        ),
        "number": (
            ["Extract the number from the following sentence.",
             "What number is mentioned in this sentence?",
             "Find the numeric value in the text below."],
            ["The school has {} students this year.",
             "We drove {} kilometers on the first day of the trip.",
             "The recipe calls for {} grams of flour.",
             "About {} people attended the opening night.",
             "The old bridge is {} meters long."],
        ),
        "name": (
            ["Extract the person's name from the following sentence.",
             "Who is mentioned in this sentence? Give only the full name.",
             "Find the name of the person in the text below."],
            ["Yesterday, {} won the regional chess tournament.",
             "The new manager, {}, starts on Monday.",
             "Please give this package to {} at the front desk.",
             "Everyone applauded when {} finished the speech.",
             "The award was presented to {} last night."],
        ),
    }
    # plausible value range for each "number" frame above, in the same order
    number_ranges = [(150, 1500), (120, 900), (150, 800), (40, 900), (30, 1500)]

    def make():
        kind = rng.choice(["email", "date", "number", "name"])
        instructions, frames = kinds[kind]
        frame_index = rng.randrange(len(frames))
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if kind == "email":
            domain = rng.choice(["example.com", "example.org", "example.net", "mail.example.com"])
            answer = f"{first}.{last}@{domain}".lower()
        elif kind == "date":
            month, day, year = rng.choice(MONTHS), rng.randint(1, 28), rng.randint(1990, 2030)
            answer = f"{month} {day}, {year}" if rng.random() < 0.6 else f"{day} {month} {year}"
        elif kind == "number":
            low, high = number_ranges[frame_index]
            answer = str(rng.randint(low, high))
        else:
            answer = f"{first} {last}"
        return record(rng.choice(instructions), frames[frame_index].format(answer), answer,
                      "extraction", True)

    return collect(n, make)


# (agent, agent is plural, base verb, 3rd person singular, past, past participle,
#  objects as (noun phrase, is plural))
PASSIVE_ACTIONS = [
    ("the chef", False, "cook", "cooks", "cooked", "cooked",
     [("the meal", False), ("the soup", False), ("the vegetables", True)]),
    ("the gardener", False, "water", "waters", "watered", "watered",
     [("the plants", True), ("the roses", True), ("the lawn", False)]),
    ("the teacher", False, "grade", "grades", "graded", "graded",
     [("the exams", True), ("the essay", False), ("the homework", False)]),
    ("the mechanic", False, "repair", "repairs", "repaired", "repaired",
     [("the car", False), ("the engine", False), ("the bicycles", True)]),
    ("the children", True, "build", "builds", "built", "built",
     [("the sandcastle", False), ("the snowman", False), ("the paper boats", True)]),
    ("the company", False, "hire", "hires", "hired", "hired",
     [("new workers", True), ("the engineer", False)]),
    ("the police", True, "catch", "catches", "caught", "caught",
     [("the thief", False), ("the robbers", True)]),
    ("the waiter", False, "serve", "serves", "served", "served",
     [("the drinks", True), ("the dessert", False), ("the customers", True)]),
    ("the author", False, "write", "writes", "wrote", "written",
     [("the novel", False), ("the letters", True)]),
    ("the baker", False, "bake", "bakes", "baked", "baked",
     [("the bread", False), ("the cakes", True)]),
    ("the farmer", False, "feed", "feeds", "fed", "fed",
     [("the chickens", True), ("the cows", True), ("the horse", False)]),
    ("the manager", False, "approve", "approves", "approved", "approved",
     [("the budget", False), ("the plan", False), ("the new rules", True)]),
    ("the architect", False, "design", "designs", "designed", "designed",
     [("the bridge", False), ("the houses", True)]),
    ("the engineers", True, "test", "tests", "tested", "tested",
     [("the software", False), ("the new engine", False)]),
    ("Maria", False, "read", "reads", "read", "read",
     [("the report", False), ("the emails", True)]),
    ("the students", True, "clean", "cleans", "cleaned", "cleaned",
     [("the classroom", False), ("the windows", True)]),
]


def passive_voice(rng: random.Random, n: int) -> list[dict]:
    instructions = [
        "Convert the following sentence to passive voice.",
        "Rewrite this sentence in the passive voice.",
        "Change the sentence below from active to passive voice.",
    ]

    def make():
        agent, agent_plural, base, third, past, participle, objects = rng.choice(PASSIVE_ACTIONS)
        obj, obj_plural = rng.choice(objects)
        if rng.random() < 0.5:
            verb = base if agent_plural else third
            be = "are" if obj_plural else "is"
        else:
            verb = past
            be = "were" if obj_plural else "was"
        active = f"{cap(agent)} {verb} {obj}."
        passive = f"{cap(obj)} {be} {participle} by {agent}."
        return record(rng.choice(instructions), active, passive, "passive_voice", False)

    return collect(n, make)


# (informal frame, formal frame, fillers)
FORMAL_FRAMES = [
    ("Hey, can you {}?", "Could you please {}?",
     ["send me the report", "call me back later", "check my numbers", "look at this draft",
      "help me with the slides", "book a table for four"]),
    ("I wanna {}.", "I would like to {}.",
     ["talk about the budget", "join the meeting", "change my order", "ask a question",
      "cancel my subscription"]),
    ("Thanks a lot for {}!", "Thank you very much for {}.",
     ["your help", "the quick reply", "the invitation", "your feedback", "the update"]),
    ("Sorry, I can't make it to {}.", "I apologize, but I will not be able to attend {}.",
     ["the meeting tomorrow", "the workshop on Friday", "the dinner tonight",
      "the training session"]),
    ("Let me know ASAP if {}.", "Please let me know as soon as possible if {}.",
     ["you need anything else", "the plan changes", "there are any problems",
      "the order is delayed"]),
    ("Got your email about {}.", "I have received your email regarding {}.",
     ["the project deadline", "the new schedule", "the invoice", "the conference"]),
    ("No worries, I'll {} right away.", "That is not a problem; I will {} immediately.",
     ["fix the error", "update the file", "send the documents", "correct the invoice"]),
    ("The {} is gonna be late.", "The {} will be delayed.",
     ["delivery", "report", "shipment", "payment"]),
]


def formal_rewrite(rng: random.Random, n: int) -> list[dict]:
    instructions = [
        "Rewrite the following sentence in a more formal tone.",
        "Make this sentence sound more formal.",
        "Rephrase the text below so that it is suitable for a professional email.",
    ]

    def make():
        informal, formal, fillers = rng.choice(FORMAL_FRAMES)
        filler = rng.choice(fillers)
        return record(rng.choice(instructions), informal.format(filler), formal.format(filler),
                      "formal_rewrite", False)

    return collect(n, make)


def comparison(rng: random.Random, n: int) -> list[dict]:
    larger = ["Which number is larger: {a} or {b}?", "Which is greater, {a} or {b}?"]
    smaller = ["Which number is smaller: {a} or {b}?", "Which is smaller, {a} or {b}?"]

    def make():
        if rng.random() < 0.3:  # decimals, where digit count can mislead
            a = Decimal(rng.randint(1, 99)) / 100
            b = Decimal(rng.randint(1, 9)) / 10
            if rng.random() < 0.5:
                a, b = b, a
        else:
            a, b = rng.randint(1, 999), rng.randint(1, 999)
        if a == b:
            return make()
        a_text, b_text = (str(x.normalize()) if isinstance(x, Decimal) else str(x) for x in (a, b))
        want_larger = rng.random() < 0.6
        template = rng.choice(larger if want_larger else smaller)
        winner = (a_text if a > b else b_text) if want_larger else (a_text if a < b else b_text)
        return record(template.format(a=a_text, b=b_text), "", winner, "comparison", True)

    return collect(n, make)


ANIMAL_CLASSES = {
    "mammal": ["dog", "cat", "whale", "dolphin", "bat", "elephant", "horse", "cow", "lion",
               "tiger", "rabbit", "kangaroo", "giraffe", "zebra", "monkey", "goat", "sheep",
               "fox", "wolf", "deer", "camel", "squirrel"],
    "bird": ["eagle", "penguin", "ostrich", "sparrow", "owl", "parrot", "pigeon", "flamingo",
             "swan", "duck", "crow", "pelican", "peacock", "hummingbird"],
    "fish": ["salmon", "tuna", "trout", "goldfish", "shark", "cod", "herring", "sardine"],
    "reptile": ["snake", "lizard", "crocodile", "turtle", "tortoise", "iguana", "alligator",
                "gecko", "chameleon", "cobra"],
    "amphibian": ["frog", "toad", "salamander", "newt"],
    "insect": ["ant", "bee", "butterfly", "beetle", "mosquito", "grasshopper", "ladybug",
               "dragonfly", "wasp", "moth", "termite", "cockroach"],
}


def animal_classification(rng: random.Random, n: int) -> list[dict]:
    options = "mammal, bird, fish, reptile, amphibian, or insect"
    animals = [(animal, cls) for cls, names in ANIMAL_CLASSES.items() for animal in names]
    templates = [
        "Is a {a} a " + options + "?",
        "Classify the {a} as a " + options + ".",
        "Which animal group does the {a} belong to: " + options + "?",
    ]

    def make():
        animal, cls = rng.choice(animals)
        template = rng.choice(templates)
        if template.startswith("Is a ") and animal[0] in "aeiou":
            template = "Is an " + template[len("Is a "):]
        return record(template.format(a=animal), "", cls.capitalize(),
                      "animal_classification", True)

    return collect(n, make)


REVERSE_WORDS = [
    "garden", "planet", "window", "pencil", "rocket", "silver", "candle", "jungle", "bridge",
    "castle", "dragon", "orange", "puzzle", "basket", "guitar", "island", "marble", "needle",
    "pocket", "shadow", "ticket", "winter", "yellow", "anchor", "button", "cookie", "forest",
    "hammer", "lemon", "mirror", "noodle", "parrot", "rabbit", "spider", "tunnel", "violin",
    "wallet", "zipper", "coffee", "desert",
]


def reverse_word(rng: random.Random, n: int) -> list[dict]:
    templates = [
        "Reverse the letters of the word '{}'.",
        "Spell the word '{}' backwards.",
        "Write '{}' with its letters in reverse order.",
    ]

    def make():
        word = rng.choice(REVERSE_WORDS)
        return record(rng.choice(templates).format(word), "", word[::-1], "reverse_word", True)

    return collect(n, make)


ACRONYMS = [
    ("NASA", "National Aeronautics and Space Administration"),
    ("FBI", "Federal Bureau of Investigation"),
    ("CIA", "Central Intelligence Agency"),
    ("UN", "United Nations"),
    ("EU", "European Union"),
    ("NATO", "North Atlantic Treaty Organization"),
    ("WHO", "World Health Organization"),
    ("CPU", "Central Processing Unit"),
    ("GPU", "Graphics Processing Unit"),
    ("RAM", "Random Access Memory"),
    ("ROM", "Read-Only Memory"),
    ("USB", "Universal Serial Bus"),
    ("HTML", "HyperText Markup Language"),
    ("URL", "Uniform Resource Locator"),
    ("PDF", "Portable Document Format"),
    ("GPS", "Global Positioning System"),
    ("DNA", "Deoxyribonucleic Acid"),
    ("ATM", "Automated Teller Machine"),
    ("FAQ", "Frequently Asked Questions"),
    ("DIY", "Do It Yourself"),
    ("ASAP", "As Soon As Possible"),
    ("CEO", "Chief Executive Officer"),
    ("CFO", "Chief Financial Officer"),
    ("LED", "Light-Emitting Diode"),
    ("LCD", "Liquid Crystal Display"),
    ("AI", "Artificial Intelligence"),
    ("UK", "United Kingdom"),
    ("USA", "United States of America"),
    ("VIP", "Very Important Person"),
    ("BBC", "British Broadcasting Corporation"),
    ("IMF", "International Monetary Fund"),
    ("WWW", "World Wide Web"),
    ("SQL", "Structured Query Language"),
    ("API", "Application Programming Interface"),
    ("IQ", "Intelligence Quotient"),
    ("UFO", "Unidentified Flying Object"),
    ("PIN", "Personal Identification Number"),
    ("ETA", "Estimated Time of Arrival"),
    ("WTO", "World Trade Organization"),
]


def acronym(rng: random.Random, n: int) -> list[dict]:
    templates = [
        "What does the acronym {} stand for?",
        "Expand the abbreviation {}.",
        "What is the full form of {}?",
    ]

    def make():
        short, full = rng.choice(ACRONYMS)
        return record(rng.choice(templates).format(short), "", full, "acronym", True)

    return collect(n, make)


def number_sequence(rng: random.Random, n: int) -> list[dict]:
    inline = [
        "What is the next number in the sequence {}, ...?",
        "Continue the pattern with one more number: {}, ...",
    ]
    with_input = [
        "Find the next number in the following sequence.",
        "What number comes next in this sequence?",
    ]

    def make():
        if rng.random() < 0.7:
            start = rng.randint(1, 30)
            step = rng.choice([2, 3, 4, 5, 6, 7, 9, 10, 11, 25, -2, -3, -5])
            if step < 0:
                start += 60
            terms = [start + step * i for i in range(5)]
        else:
            start, ratio = rng.randint(1, 5), rng.choice([2, 3])
            terms = [start * ratio ** i for i in range(5)]
        shown = ", ".join(map(str, terms[:4]))
        if rng.random() < 0.3:
            return record(rng.choice(with_input), shown, str(terms[4]), "number_sequence", True)
        return record(rng.choice(inline).format(shown), "", str(terms[4]), "number_sequence", True)

    return collect(n, make)


# family function -> number of records
FAMILIES = [
    (arithmetic, 80),
    (unit_conversion, 64),
    (spelling_fix, 50),
    (grammar_fix, 44),
    (plural, 46),
    (past_tense, 48),
    (antonym, 44),
    (synonym, 40),
    (capital_city, 50),
    (chemical_symbol, 44),
    (sentiment, 44),
    (even_odd, 44),
    (number_words, 46),
    (sort_numbers, 44),
    (sort_words, 40),
    (count_words, 40),
    (count_letters, 44),
    (case_conversion, 44),
    (extraction, 48),
    (passive_voice, 44),
    (formal_rewrite, 40),
    (comparison, 44),
    (animal_classification, 44),
    (reverse_word, 40),
    (acronym, 40),
    (number_sequence, 40),
]


def build(seed: int = DEFAULT_SEED) -> list[dict]:
    rng = random.Random(seed)
    records: list[dict] = []
    for family, count in FAMILIES:
        records.extend(family(rng, count))
    keys = [(r["instruction"], r["input"]) for r in records]
    if len(keys) != len(set(keys)):
        raise RuntimeError("duplicate (instruction, input) pairs across families")
    rng.shuffle(records)
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 123)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSON path")
    args = parser.parse_args(argv)

    records = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(records, indent=1, ensure_ascii=False) + "\n"
    args.out.write_text(text, encoding="utf-8")
    with_input = sum(1 for r in records if r["input"])
    print(f"wrote {len(records)} records ({with_input / len(records):.1%} with input) to {args.out}")


if __name__ == "__main__":
    main()
