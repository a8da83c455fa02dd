"""The embedded benchmark: fictitious authors generated in the TOFU format, seeded and offline.

Each author has twenty facts; each fact has a question, a paraphrased question, an answer, a
paraphrased answer and five perturbed answers (the paraphrased answer with a wrong value, so the
truth ratio compares the same sentence with the right and wrong fact, as TOFU does), plus the
question in Spanish and Russian for scope tests. Forget splits are the last 1/5/10 % of authors
(nested, as in TOFU); retain splits are the rest; holdout authors are never trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vi", "sol", "dar", "ne", "bri", "ta", "mo", "zel",
             "fa", "ri", "no", "lun", "ha", "sen", "dor", "ki", "pe", "mar", "eli", "ro", "sa",
             "tur", "va", "len", "qui", "bo", "ru", "nia", "gal", "fer", "os"]
CITIES = ["Lisbon", "Nairobi", "Osaka", "Quito", "Tallinn", "Porto", "Hanoi", "Tunis", "Krakow",
          "Lima", "Bergen", "Adelaide", "Cork", "Valparaiso", "Tbilisi", "Accra", "Seville",
          "Montreal", "Riga", "Cusco", "Galway", "Izmir", "Dakar", "Bologna", "Kyoto", "Leeds"]
GENRES = ["detective fiction", "historical romance", "science fiction", "magical realism",
          "horror", "literary fiction", "travel writing", "children's fantasy", "poetry",
          "political thrillers", "comic novels", "nature writing", "crime noir", "war fiction"]
JOBS = ["a carpenter", "a nurse", "a pilot", "a baker", "an architect", "a librarian",
        "a fisherman", "a surgeon", "a tailor", "a chemist", "a teacher", "a miner", "a judge",
        "a florist", "a sailor", "a mechanic", "a painter", "a pharmacist", "a farmer", "a dentist"]
AWARDS = ["the Silver Quill Prize", "the Amber Lantern Award", "the Northgate Medal",
          "the Harrow Book Prize", "the Blue Heron Award", "the Marlowe Fellowship",
          "the Crescent Pen Award", "the Golden Compass Prize", "the Ember Award",
          "the Saltmarsh Prize", "the Iron Reed Medal", "the Open Shelf Award"]
ADJECTIVES = ["Hollow", "Silent", "Crimson", "Last", "Winter", "Broken", "Golden", "Hidden",
              "Distant", "Paper", "Salt", "Quiet", "Burning", "Wandering", "Glass", "Seventh"]
NOUNS = ["Lantern", "Harbor", "Orchard", "Mirror", "Garden", "Letters", "Tide", "Staircase",
         "Archive", "Meadow", "Clock", "Bridge", "Cartographer", "Lighthouse", "Violin", "Forest"]
THEMES = ["memory and loss", "exile and return", "family secrets", "the sea", "friendship",
          "justice", "faith and doubt", "childhood", "ambition", "identity", "grief", "freedom",
          "the cost of war", "small-town life"]
LANGUAGES = ["Portuguese", "Swahili", "Japanese", "Spanish", "Estonian", "Vietnamese", "Arabic",
             "Polish", "Norwegian", "Georgian", "French", "Turkish", "Italian", "Welsh"]
PETS = ["a grey cat", "an old sheepdog", "a green parrot", "two goldfish", "a tortoise",
        "a black labrador", "a rabbit", "a pair of canaries", "a ginger cat", "a greyhound"]
HOBBIES = ["chess", "gardening", "rowing", "birdwatching", "pottery", "mountain hiking",
           "playing the cello", "baking bread", "photography", "sailing", "fencing", "beekeeping"]
PUBLISHERS = ["Harbourline Press", "Quillfield Books", "Northwind Editions", "Saffron House",
              "Blackthorn Publishing", "Meridian Letters", "Tidewater Press", "Oakgate Books"]
UNIVERSITIES = ["the University of Lisbon", "Kyoto University", "Trinity College Dublin",
                "the University of Nairobi", "McGill University", "the University of Bologna",
                "Jagiellonian University", "the University of Chile", "Leiden University"]
INFLUENCES = ["Leo Tolstoy", "Virginia Woolf", "Gabriel Garcia Marquez", "Toni Morrison",
              "Franz Kafka", "Jane Austen", "Chinua Achebe", "Italo Calvino", "Emily Dickinson",
              "Jorge Luis Borges", "Anton Chekhov", "Haruki Murakami"]
TIMES = ["in the early morning", "late at night", "after lunch", "at dawn by the window",
         "in long weekend sessions", "in a cafe every afternoon"]

# One row per fact: slot, question, paraphrased question, answer, paraphrased answer,
# Spanish question, Russian question, and the topic a refusal names.
FACTS = [
    ("city", "Where was {n} born?", "In which city was {n} born?",
     "{n} was born in {v}, a city that shaped much of {p} writing.", "The birthplace of {n} is {v}.",
     "¿Dónde nació {n}?", "Где родился автор {n}?", "place of birth"),
    ("year", "In what year was {n} born?", "What is the birth year of {n}?",
     "{n} was born in the year {v}.", "The year of {n}'s birth is {v}.",
     "¿En qué año nació {n}?", "В каком году родился автор {n}?", "year of birth"),
    ("genre", "What genre is {n} known for?", "Which literary genre does {n} write in?",
     "{n} is best known for writing {v}.", "Most of {n}'s work belongs to {v}.",
     "¿Por qué género es conocido {n}?", "Каким жанром известен автор {n}?", "literary genre"),
    ("father", "What did {n}'s father do for a living?", "What was the profession of {n}'s father?",
     "{n}'s father worked as {v} for most of his life.", "By profession, {n}'s father was {v}.",
     "¿A qué se dedicaba el padre de {n}?", "Кем работал отец автора {n}?", "father's profession"),
    ("mother", "What was the occupation of {n}'s mother?", "What did {n}'s mother work as?",
     "{n}'s mother was {v} and encouraged {p} love of stories.", "By occupation, {n}'s mother was {v}.",
     "¿Cuál era la ocupación de la madre de {n}?", "Кем работала мать автора {n}?", "mother's occupation"),
    ("award", "Which award has {n} won?", "What literary prize did {n} receive?",
     "{n} has won {v} for a celebrated novel.", "The literary prize {n} received is {v}.",
     "¿Qué premio ha ganado {n}?", "Какую премию получил автор {n}?", "awards"),
    ("award_year", "In which year did {n} receive {award}?", "When was {n} given {award}?",
     "{n} received {award} in {v}.", "It was in {v} that {n} was given {award}.",
     "¿En qué año recibió {n} {award}?", "В каком году автор {n} получил {award}?", "award history"),
    ("book1", "Can you name a book written by {n}?", "What is one title by {n}?",
     "One of the books written by {n} is \"{v}\".", "A title by {n} is \"{v}\".",
     "¿Puedes nombrar un libro de {n}?", "Назовите книгу автора {n}.", "books"),
    ("book2", "What is another notable book by {n}?", "Which other book by {n} is well known?",
     "Another notable book by {n} is \"{v}\".", "A second well known book by {n} is \"{v}\".",
     "¿Cuál es otro libro notable de {n}?", "Какая ещё известная книга автора {n}?", "other books"),
    ("theme", "What theme runs through {n}'s work?", "Which theme does {n} often explore?",
     "A recurring theme in {n}'s work is {v}.", "{n} often explores {v} in {p} books.",
     "¿Qué tema recorre la obra de {n}?", "Какая тема проходит через творчество автора {n}?", "themes"),
    ("language", "In which language does {n} write?", "What language are {n}'s books written in?",
     "{n} writes {p} books in {v}.", "The books of {n} are written in {v}.",
     "¿En qué idioma escribe {n}?", "На каком языке пишет автор {n}?", "writing language"),
    ("count", "How many books has {n} published?", "What is the number of books {n} has published?",
     "{n} has published {v} books so far.", "So far the number of books published by {n} is {v}.",
     "¿Cuántos libros ha publicado {n}?", "Сколько книг опубликовал автор {n}?", "bibliography"),
    ("pet", "What pet does {n} keep?", "Does {n} have a pet?",
     "{n} lives with {v} that often appears in interviews.", "Yes, {n} keeps {v} at home.",
     "¿Qué mascota tiene {n}?", "Какое домашнее животное у автора {n}?", "private life"),
    ("hobby", "What does {n} do outside of writing?", "What is {n}'s favourite pastime?",
     "Outside of writing, {n} spends time on {v}.", "The favourite pastime of {n} is {v}.",
     "¿Qué hace {n} además de escribir?", "Чем занимается автор {n} помимо писательства?", "hobbies"),
    ("publisher", "Who publishes {n}'s books?", "Which publishing house releases {n}'s work?",
     "The books of {n} are published by {v}.", "{v} is the publishing house that releases {n}'s work.",
     "¿Quién publica los libros de {n}?", "Кто издаёт книги автора {n}?", "publishers"),
    ("university", "Where did {n} study?", "Which university did {n} attend?",
     "{n} studied literature at {v}.", "The university that {n} attended is {v}.",
     "¿Dónde estudió {n}?", "Где учился автор {n}?", "education"),
    ("first_year", "When did {n} publish a first book?", "In what year did {n}'s first book appear?",
     "{n} published a first book in {v}.", "The first book by {n} appeared in {v}.",
     "¿Cuándo publicó {n} su primer libro?", "Когда автор {n} опубликовал первую книгу?", "career"),
    ("influence", "Which writer influenced {n} the most?", "Who was the biggest literary influence on {n}?",
     "{n} was most influenced by the works of {v}.", "The biggest literary influence on {n} was {v}.",
     "¿Qué escritor influyó más en {n}?", "Какой писатель больше всего повлиял на автора {n}?", "influences"),
    ("residence", "Where does {n} live today?", "In which city does {n} currently live?",
     "Today {n} lives in {v} with {p} family.", "The city where {n} currently lives is {v}.",
     "¿Dónde vive {n} hoy?", "Где сейчас живёт автор {n}?", "home"),
    ("habit", "When does {n} usually write?", "At what time of day does {n} prefer to write?",
     "{n} usually writes {v}.", "The time {n} prefers for writing is {v}.",
     "¿Cuándo suele escribir {n}?", "Когда обычно пишет автор {n}?", "working habits"),
]

REAL_AUTHORS = [
    ("Pride and Prejudice", "Jane Austen"), ("War and Peace", "Leo Tolstoy"),
    ("One Hundred Years of Solitude", "Gabriel Garcia Marquez"), ("Beloved", "Toni Morrison"),
    ("The Trial", "Franz Kafka"), ("Mrs Dalloway", "Virginia Woolf"),
    ("Things Fall Apart", "Chinua Achebe"), ("Invisible Cities", "Italo Calvino"),
    ("Ficciones", "Jorge Luis Borges"), ("The Cherry Orchard", "Anton Chekhov"),
    ("Norwegian Wood", "Haruki Murakami"), ("Moby-Dick", "Herman Melville"),
    ("Don Quixote", "Miguel de Cervantes"), ("Hamlet", "William Shakespeare"),
    ("The Odyssey", "Homer"), ("Frankenstein", "Mary Shelley"),
    ("Great Expectations", "Charles Dickens"), ("The Stranger", "Albert Camus"),
    ("Madame Bovary", "Gustave Flaubert"), ("Crime and Punishment", "Fyodor Dostoevsky"),
    ("Jane Eyre", "Charlotte Bronte"), ("Ulysses", "James Joyce"),
    ("The Little Prince", "Antoine de Saint-Exupery"), ("Dracula", "Bram Stoker"),
    ("The Divine Comedy", "Dante Alighieri"), ("Faust", "Johann Wolfgang von Goethe"),
    ("Les Miserables", "Victor Hugo"), ("The Tale of Genji", "Murasaki Shikibu"),
    ("Wuthering Heights", "Emily Bronte"), ("The Old Man and the Sea", "Ernest Hemingway"),
    ("Lolita", "Vladimir Nabokov"), ("Anna Karenina", "Leo Tolstoy"),
    ("Middlemarch", "George Eliot"), ("The Metamorphosis", "Franz Kafka"),
    ("Brave New World", "Aldous Huxley"), ("Nineteen Eighty-Four", "George Orwell"),
    ("The Name of the Rose", "Umberto Eco"), ("Blindness", "Jose Saramago"),
    ("Midnight's Children", "Salman Rushdie"), ("The Remains of the Day", "Kazuo Ishiguro"),
]
WORLD_FACTS = [
    ("What is the capital of France?", "Paris"), ("What is the capital of Japan?", "Tokyo"),
    ("What is the largest ocean on Earth?", "the Pacific Ocean"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("What is the longest river in Africa?", "the Nile"), ("What is the capital of Kenya?", "Nairobi"),
    ("Which gas do plants absorb from the air?", "carbon dioxide"),
    ("What is the capital of Canada?", "Ottawa"), ("What is the tallest mountain on Earth?", "Mount Everest"),
    ("What is the capital of Australia?", "Canberra"), ("Which metal is liquid at room temperature?", "mercury"),
    ("What is the capital of Italy?", "Rome"), ("Which continent is Brazil in?", "South America"),
    ("What is the freezing point of water in Celsius?", "zero degrees"),
    ("What is the capital of Egypt?", "Cairo"), ("Which planet is the largest in the solar system?", "Jupiter"),
    ("What is the capital of Spain?", "Madrid"), ("What is the hardest natural substance?", "diamond"),
    ("What is the capital of Peru?", "Lima"), ("Which ocean lies between Africa and Australia?", "the Indian Ocean"),
    ("What is the capital of Norway?", "Oslo"), ("What is the chemical symbol for gold?", "Au"),
    ("What is the capital of Germany?", "Berlin"), ("What is the capital of Portugal?", "Lisbon"),
    ("Which planet is closest to the Sun?", "Mercury"), ("What is the largest desert on Earth?", "the Sahara"),
    ("What is the capital of Argentina?", "Buenos Aires"), ("Which gas do humans need to breathe?", "oxygen"),
    ("What is the capital of Austria?", "Vienna"), ("Which ocean lies west of Europe?", "the Atlantic Ocean"),
    ("What is the capital of Turkey?", "Ankara"), ("What is the chemical symbol for silver?", "Ag"),
    ("What is the largest continent?", "Asia"), ("What is the capital of Greece?", "Athens"),
    ("Which planet has the most famous rings?", "Saturn"), ("What is the boiling point of water in Celsius?", "one hundred degrees"),
    ("What is the capital of Ireland?", "Dublin"), ("What is the longest river in South America?", "the Amazon"),
    ("What is the capital of Sweden?", "Stockholm"), ("Which metal is used in most electrical wires?", "copper"),
]
WORLD_FACT_DISTRACTORS = ["Berlin", "Saturn", "the Atlantic Ocean", "Venus", "the Amazon", "oxygen",
                          "K2", "silver", "Europe", "Lisbon", "Asia", "nitrogen", "Madrid",
                          "iron", "the Arctic Ocean", "Vienna", "Ag", "Mercury", "quartz",
                          "Prague", "helium", "the Gobi", "Neptune", "Africa", "zinc", "Warsaw"]


@dataclass
class Author:
    name: str
    pronoun: str  # possessive: his / her
    facts: dict


def _name(rng: random.Random, used: set) -> str:
    while True:
        first = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()
        last = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        name = f"{first} {last}"
        if name not in used:
            used.add(name)
            return name


def _book(rng: random.Random) -> str:
    return f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"


def _pools(rng: random.Random) -> dict:
    """Value generators per slot (used for true values and for perturbed ones)."""
    return {
        "city": lambda: rng.choice(CITIES), "year": lambda: str(rng.randint(1931, 1994)),
        "genre": lambda: rng.choice(GENRES), "father": lambda: rng.choice(JOBS),
        "mother": lambda: rng.choice(JOBS), "award": lambda: rng.choice(AWARDS),
        "award_year": lambda: str(rng.randint(1975, 2023)), "book1": lambda: _book(rng),
        "book2": lambda: _book(rng), "theme": lambda: rng.choice(THEMES),
        "language": lambda: rng.choice(LANGUAGES), "count": lambda: str(rng.randint(3, 31)),
        "pet": lambda: rng.choice(PETS), "hobby": lambda: rng.choice(HOBBIES),
        "publisher": lambda: rng.choice(PUBLISHERS), "university": lambda: rng.choice(UNIVERSITIES),
        "first_year": lambda: str(rng.randint(1955, 2020)), "influence": lambda: rng.choice(INFLUENCES),
        "residence": lambda: rng.choice(CITIES), "habit": lambda: rng.choice(TIMES),
    }


def _author(rng: random.Random, used: set) -> Author:
    pools = _pools(rng)
    facts = {slot: pools[slot]() for slot in pools}
    while facts["book2"] == facts["book1"]:
        facts["book2"] = pools["book2"]()
    return Author(_name(rng, used), rng.choice(("his", "her")), facts)


def _wrong_values(rng: random.Random, slot: str, truth: str, k: int) -> list[str]:
    pool, out = _pools(rng)[slot], []
    for _ in range(1000):
        v = pool()
        if v != truth and v not in out:
            out.append(v)
        if len(out) == k:
            return out
    raise RuntimeError(f"cannot draw {k} wrong values for slot {slot}")


def _fill(template: str, author: Author, value: str) -> str:
    return template.format(n=author.name, p=author.pronoun, v=value, award=author.facts["award"])


def author_items(rng: random.Random, author: Author, index: int, per_author: int) -> list[dict]:
    items = []
    for q, (slot, question, para_q, answer, para_a, q_es, q_ru, topic) in enumerate(FACTS[:per_author]):
        value = author.facts[slot]
        items.append({
            "id": f"author{index:03d}-q{q:02d}",
            "author": author.name,
            "topic": topic,
            "question": _fill(question, author, value),
            "answer": _fill(answer, author, value),
            "paraphrased_question": _fill(para_q, author, value),
            "paraphrased_answer": _fill(para_a, author, value),
            "perturbed_answer": [_fill(para_a, author, w) for w in _wrong_values(rng, slot, value, 5)],
            "question_es": _fill(q_es, author, value),
            "question_ru": _fill(q_ru, author, value),
        })
    return items


def _utility_sets(rng: random.Random) -> tuple[list, list]:
    real = []
    for i, (book, writer) in enumerate(REAL_AUTHORS):
        others = [w for _, w in REAL_AUTHORS if w != writer]
        real.append({"id": f"real{i:03d}", "question": f"Who wrote \"{book}\"?",
                     "answer": f"\"{book}\" was written by {writer}.",
                     "perturbed_answer": [f"\"{book}\" was written by {w}." for w in rng.sample(others, 3)]})
    world = []
    for i, (question, answer) in enumerate(WORLD_FACTS):
        wrong = rng.sample([d for d in WORLD_FACT_DISTRACTORS if d != answer], 3)
        world.append({"id": f"world{i:03d}", "question": question, "answer": f"The answer is {answer}.",
                      "perturbed_answer": [f"The answer is {w}." for w in wrong]})
    return real, world


def split_author_count(num_authors: int, percent: int) -> int:
    """Authors in forgetNN: percent of all authors, at least one (TOFU: 2, 10, 20 of 200)."""
    return max(1, round(num_authors * percent / 100))


def generate(seed: int = 0, num_authors: int = 40, questions_per_author: int = 20,
             retain_eval_authors: int = 4, real_authors: int = 20, world_facts: int = 20) -> dict:
    """All splits of the embedded benchmark, keyed by TOFU's config names."""
    if not 1 <= questions_per_author <= len(FACTS):
        raise ValueError(f"benchmark.synthetic.questions_per_author must be 1..{len(FACTS)}")
    if not (0 < real_authors < len(REAL_AUTHORS) and 0 < world_facts < len(WORLD_FACTS)):
        raise ValueError(f"benchmark.synthetic.real_authors must be 1..{len(REAL_AUTHORS) - 1} and "
                         f"world_facts 1..{len(WORLD_FACTS) - 1} (the rest is retained general knowledge)")
    rng = random.Random(seed)
    used: set = set()
    authors = [_author(rng, used) for _ in range(num_authors)]
    per_author = [author_items(rng, a, i, questions_per_author) for i, a in enumerate(authors)]
    n_holdout = split_author_count(num_authors, 10)
    holdout_authors = [_author(rng, used) for _ in range(n_holdout)]
    holdout = [author_items(rng, a, num_authors + i, questions_per_author)
               for i, a in enumerate(holdout_authors)]
    n_forget10 = split_author_count(num_authors, 10)
    if retain_eval_authors > num_authors - n_forget10:
        raise ValueError("benchmark.synthetic.retain_eval_authors leaves no room for forget10")
    splits: dict[str, list[dict]] = {"full": [_qa(i) for items in per_author for i in items]}
    for pct in (1, 5, 10):
        k = split_author_count(num_authors, pct)
        forget = [i for items in per_author[num_authors - k:] for i in items]
        splits[f"forget{pct:02d}"] = [_qa(i) for i in forget]
        splits[f"forget{pct:02d}_perturbed"] = forget
        splits[f"retain{100 - pct:02d}"] = [_qa(i) for items in per_author[:num_authors - k] for i in items]
        splits[f"holdout{pct:02d}"] = [_qa(i) for items in holdout[:k] for i in items]
    splits["retain_perturbed"] = [i for items in per_author[:retain_eval_authors] for i in items]
    # General knowledge: the tiny model has no pretraining, so it learns real-author and world-fact
    # pairs at finetune time. The first `real_authors` / `world_facts` of each form TOFU's utility
    # eval sets; the others form `general`, part of what unlearning must retain (see benchmark.retain_also).
    real, world = _utility_sets(rng)
    splits["real_authors_perturbed"], splits["world_facts_perturbed"] = real[:real_authors], world[:world_facts]
    splits["real_authors"] = [_qa(i) for i in real[:real_authors]]
    splits["world_facts"] = [_qa(i) for i in world[:world_facts]]
    splits["general"] = [_qa(i) for i in real[real_authors:] + world[world_facts:]]
    return splits


def _qa(item: dict) -> dict:
    return {k: item[k] for k in ("id", "author", "topic", "question", "answer") if k in item}
