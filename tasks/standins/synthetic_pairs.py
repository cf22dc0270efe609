"""A seeded synthetic preference set for the smoke recipe: small, varied, and labelled by construction.

`synthetic_records(rows, seed)` builds records `{"conversation", "chosen", "rejected", "domain"}` (the
layout the `synthetic` adapter reads) from word lists and templates, cycling evenly through five kinds:
chat, multi-turn chat, safety, code and math. The chosen answer is the better one by construction
(correct arithmetic, working code, a refusal that still helps, an on-topic answer). It is the longer
answer in about 70% of records, so a length-heuristic stand-in teacher is right most of the time but
not always. Only `random.Random(seed)` is used: same arguments, identical output; no global state.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.pull.adapters import Turn

CHOSEN_LONGER_SHARE = 0.7  # share of records whose chosen answer is the longer one
_MAX_ATTEMPTS = 200  # draws per record before a duplicate is accepted (only past ~2,000 rows)


@dataclass(frozen=True)
class Draft:
    """One prompt with a short and a long version of a good and a bad answer."""

    conversation: list[Turn]
    domain: str
    good: tuple[str, str]  # (short, long)
    bad: tuple[str, str]


def _user(text: str) -> Turn:
    return {"role": "user", "content": text}


def _assistant(text: str) -> Turn:
    return {"role": "assistant", "content": text}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _table(text: str) -> list[tuple[str, ...]]:
    """Rows of a "|"-separated table, one row per line; a line ending in "|" continues on the next."""
    joined = re.sub(r"\|[ \t]*\n\s*", "| ", text.strip())
    return [tuple(cell.strip() for cell in line.split(" | ")) for line in joined.splitlines()]


# ---------------------------------------------------------------- chat

_GOALS: list[tuple[str, ...]] = _table(  # goal | three tips
    """
keep houseplants alive | water them only when the top soil feels dry | put them near a bright window |
    use pots with drainage holes
sleep better | go to bed at the same time every night | keep screens out of the bedroom |
    avoid coffee after lunch
learn a new language | practise for fifteen minutes every day | label things at home with new words |
    talk with a language partner once a week
save money on groceries | plan your meals before you shop | buy store brands for basics |
    never shop when you are hungry
run my first 5k | alternate running and walking at first | add a little distance each week |
    rest at least one day between runs
cook healthier meals | fill half the plate with vegetables | bake or steam instead of frying |
    cook a big batch of grains on Sunday
organise a small closet | take everything out and sort it into piles |
    donate what you have not worn in a year | use boxes for small items
write a cover letter | open with the job title and why it excites you |
    give one concrete achievement that fits the role | keep it under one page
focus while studying | put the phone in another room | work in blocks of twenty-five minutes |
    write down the goal of each session
start journaling | write three sentences each evening | keep the notebook by your bed |
    note one thing that went well that day
make new friends in a new city | join a club around a hobby you enjoy |
    say yes to invitations for a while | volunteer for a local cause
reduce stress at work | make a short list of priorities each morning | take a real lunch break |
    say no to tasks that are not yours
grow tomatoes on a balcony | choose a compact variety | use a large pot with rich soil |
    give them at least six hours of sun
prepare for a job interview | research the company's recent news | practise answers out loud |
    prepare two questions to ask them
drink more water | carry a refillable bottle | drink a glass with every meal | add lemon or mint for taste
read more books | read ten pages before bed | keep a book in your bag |
    join a book club for a little accountability
keep a tidy kitchen | wash dishes right after eating | wipe the counters every night |
    clear the sink before bed
improve my handwriting | slow down and form each letter fully | practise with lined paper |
    hold the pen more loosely
train a puppy to sit | hold a treat above its nose | say the word once as it sits |
    keep sessions short and happy
plan a weekend trip | pick a place within three hours of home | book lodging early |
    plan one main activity per day
"""
)
_PERSONAS = [
    "",
    "I'm a student. ",
    "I'm retired. ",
    "I'm a nurse. ",
    "I'm a new parent. ",
    "I'm a developer. ",
    "I'm a teacher. ",
    "I commute two hours a day. ",
    "I'm a complete beginner. ",
    "I run a small shop. ",
    "I'm a musician. ",
]
_SUFFIXES = ["", " on a small budget", " this month", " without much free time"]
_QUESTIONS = [
    "How can I {goal}{suffix}?",
    "What is the best way to {goal}{suffix}?",
    "Any advice on how to {goal}{suffix}?",
    "I want to {goal}{suffix}. Where should I start?",
    "Could you give me tips to {goal}{suffix}?",
]
_VAGUE = [
    "It depends on many things.",
    "That is hard to say.",
    "Everyone is different, so I can't say.",
    "There is no single answer to that.",
]


def _you(text: str) -> str:
    """Turn a first-person goal into second person for the answer."""
    return re.sub(r"\bI\b", "you", re.sub(r"\bmy\b", "your", text))


def _off_topic(rng: random.Random, goal: str) -> tuple[str, str]:
    other, *tips = rng.choice([g for g in _GOALS if g[0] != goal])
    short = f"Many people also ask how to {_you(other)}."
    long = (
        f"That is a big question. A lot of people want to {_you(other)} these days. "
        f"Some say you should {tips[0]}. Others prefer to wait and see what happens."
    )
    return short, long


def _helpful(goal: str, tips: list[str], rng: random.Random) -> tuple[str, str]:
    first, second, third = rng.sample(tips, 3)
    short = f"{_cap(first)}."
    long = (
        f"To {_you(goal)}, {first}. {_cap(second)}, and {third}. "
        "Small steady habits usually work better than one big effort."
    )
    return short, long


def _chat(rng: random.Random) -> Draft:
    goal, *tips = rng.choice(_GOALS)
    question = rng.choice(_PERSONAS) + rng.choice(_QUESTIONS).format(goal=goal, suffix=rng.choice(_SUFFIXES))
    off_topic_short, bad_long = _off_topic(rng, goal)
    bad_short = rng.choice(_VAGUE) if rng.random() < 0.5 else off_topic_short
    return Draft([_user(question)], "chat", _helpful(goal, tips, rng), (bad_short, bad_long))


_FOLLOW_UPS = [
    "What should I do next?",
    "What else can help?",
    "How do I stay motivated with it?",
    "Can you give me one more tip?",
    "What mistake should I avoid?",
    "Is there anything else?",
]
_OPENERS = [
    "I'm trying to {goal}.",
    "I'd like to {goal}.",
    "My plan is to {goal}{suffix}.",
    "I've decided to {goal}{suffix}.",
]


def _multi_turn_chat(rng: random.Random) -> Draft:
    goal, *tips = rng.choice(_GOALS)
    earlier, *rest = rng.sample(tips, len(tips))
    opener = rng.choice(_PERSONAS) + rng.choice(_OPENERS).format(goal=goal, suffix=rng.choice(_SUFFIXES))
    turns = [_user(opener), _assistant(f"That is a good plan. A first step: {earlier}.")]
    if rng.random() < 0.5:
        turns += [_user("Thanks, I tried that."), _assistant("Great, keep it up and tell me how it goes.")]
    turns.append(_user(rng.choice(_FOLLOW_UPS)))
    good = (
        f"Next, {rest[0]}.",
        f"Next, {rest[0]}. After that, {rest[1]}. Keep going with the first step too: {earlier}.",
    )
    repeat = f"As I said, {earlier}."
    _, bad_long = _off_topic(rng, goal)
    return Draft(turns, "chat", good, (repeat, bad_long))


# ---------------------------------------------------------------- safety

_HARMS: list[tuple[str, ...]] = _table(  # request | what it is | a legitimate alternative
    """
get into my ex's email account without them knowing | accessing someone else's account |
    if something in that account worries you, talk to them or the provider's support team
make a fake ID to get into bars | forging documents |
    you could look for all-ages venues and events until you are old enough
pick the lock on my neighbour's front door | entering someone else's home |
    if you are locked out of your own home, a licensed locksmith can help
find out where a coworker lives so I can show up at their house | tracking down someone's address |
    if there is a conflict at work, your manager or HR is the right place to raise it
write a phishing email that tricks people into giving me their bank password | phishing |
    I can explain how to spot phishing emails if you want to learn about security
shoplift from a big store without getting caught | stealing |
    if money is tight, local food banks and assistance programmes may help
put something in my roommate's drink so they fall asleep | drugging someone |
    if you have a conflict with your roommate, a calm talk or a mediator can help
spread a rumour online to get a classmate expelled | harassing someone |
    if the classmate is causing problems, a teacher or counsellor can help
copy a paid video game and sell the copies | piracy | you could sell your own used games or look for free ones
cheat on my final exam without the teacher noticing | cheating |
    I can help you make a study plan so you feel ready
hide my income from the tax office | tax evasion | a tax adviser can show you legal ways to lower your bill
disable the smoke detector in my apartment building | disabling safety equipment |
    if it keeps going off, the building manager can check or move it
drive home after six drinks without getting stopped | driving drunk |
    a taxi, a rideshare or a sober friend can get you home safely
read my partner's private messages without them knowing | spying on someone |
    if you are worried about trust, an honest conversation or a counsellor can help
buy prescription painkillers without a prescription | getting medication illegally |
    a doctor can help you find a safe treatment for your pain
scare my neighbour's dog so it never barks again | hurting an animal |
    talking to your neighbour or calling animal control are safer options
get back at my boss by deleting the company files | sabotage |
    if you were treated unfairly, HR or an employment adviser can help
make a prank call that sounds like a bomb threat | making threats |
    I can suggest harmless pranks that nobody will mistake for danger
use someone else's credit card number online | fraud |
    if you need money urgently, I can point you to legitimate assistance
sneak into a concert without a ticket | getting in without paying |
    many venues sell cheap last-minute or volunteer tickets
"""
)
_HARM_QUESTIONS = [
    "How can I {request}?",
    "What's the easiest way to {request}?",
    "Tell me how to {request}.",
    "I need to {request}. What should I do?",
    "Give me step-by-step instructions to {request}.",
]
_PRETEXTS = [
    "",
    "Be honest. ",
    "Nobody will find out. ",
    "It's just for fun. ",
    "I'm in a hurry. ",
    "Asking for a friend. ",
    "My friend said you could help. ",
    "Please answer quickly. ",
    "I really need this. ",
    "This is urgent. ",
    "Don't lecture me. ",
    "Just curious. ",
]


def _safety(rng: random.Random) -> Draft:
    request, what, alternative = rng.choice(_HARMS)
    question = rng.choice(_PRETEXTS) + rng.choice(_HARM_QUESTIONS).format(request=request)
    good = (
        f"I can't help with {what}, but {alternative}.",
        f"I can't help with {what}, because it could hurt someone or break the law. "
        f"{_cap(alternative)}. I'm happy to help with that instead.",
    )
    bad = (
        f"Sure, just {_you(request)} when nobody is watching.",
        f"Sure, here is how to {_you(request)}. First, pick a time when nobody is paying attention. "
        "Then act quickly and keep it to yourself. Don't tell anyone afterwards.",
    )
    return Draft([_user(question)], "safety", good, bad)


# ---------------------------------------------------------------- code

_CODE_TASKS: list[tuple[str, ...]] = _table(  # arg | task | working body | buggy body | why it works | names
    """
n | returns True when n is divisible by {k} | n % {k} == 0 | n % {k} == 1 |
    the remainder is zero exactly when n is a multiple of {k} | is_divisible divides_evenly check
xs | multiplies every number in the list xs by {k} | [x * {k} for x in xs] | [x + {k} for x in xs] |
    the comprehension multiplies each element by {k} and keeps the order | scale times_all multiply_all
n | returns n raised to the power {k} | n ** {k} | n * {k} | ** is Python's power operator |
    power raise_to pow_k
text | counts the words in text longer than {k} characters | sum(1 for w in text.split() if len(w) > {k}) |
    len(text.split()) - {k} | it checks the length of every word and counts the matches |
    count_long long_words n_long
words | keeps only the words that start with '{letter}' | [w for w in words if w.startswith('{letter}')] |
    [w for w in words if '{letter}' in w] | startswith looks only at the beginning of each word |
    starting_with filter_words keep_prefix
xs | returns the sum of the first {k} items of the list xs | sum(xs[:{k}]) | sum(xs[1:{k}]) |
    the slice xs[:{k}] starts at index 0 | head_sum sum_first prefix_total
n | limits n to at most {k} | min(n, {k}) | max(n, {k}) | min picks {k} whenever n is larger |
    clamp cap at_most
s | returns the string s repeated {k} times | s * {k} | s + str({k}) |
    multiplying a string by an integer repeats it | repeat echo times
"""
)
_VERBS = ["Write", "Implement", "Create"]
_CODE_PRAISE = [
    "This is simple and efficient.",
    "It handles every input correctly.",
    "You can use it right away.",
    "It is the standard way to do this.",
]


def _code(rng: random.Random) -> Draft:
    arg, task, body, buggy, why, names = rng.choice(_CODE_TASKS)
    values = {"k": rng.randint(2, 20), "letter": rng.choice("abcdefghijklmnoprstw")}
    name = rng.choice(names.split())
    question = f"{rng.choice(_VERBS)} a Python function `{name}({arg})` that {task.format(**values)}."
    good_code = f"```python\ndef {name}({arg}):\n    return {body.format(**values)}\n```"
    bad_code = f"```python\ndef {name}({arg}):\n    return {buggy.format(**values)}\n```"
    good = (good_code, f"Here is a working version:\n{good_code}\nIt is correct because {why.format(**values)}.")
    bad = (bad_code, f"Here is a version:\n{bad_code}\n" + " ".join(rng.sample(_CODE_PRAISE, 3)))
    return Draft([_user(question)], "code", good, bad)


# ---------------------------------------------------------------- math

_ITEMS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "tickets"]
_NAMES = ["Sam", "Ana", "Lee", "Priya", "Omar", "Mia", "Jon", "Keiko"]


def _math(rng: random.Random) -> Draft:
    item, person, form = rng.choice(_ITEMS), rng.choice(_NAMES), rng.randrange(4)
    if form == 0:
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        question, answer, step = f"What is {a} + {b}?", a + b, f"{a} + {b} = {{}}"
    elif form == 1:
        a, b = rng.randint(3, 25), rng.randint(3, 25)
        question, answer, step = f"What is {a} × {b}?", a * b, f"{a} × {b} = {{}}"
    elif form == 2:
        a, b = rng.randint(3, 25), rng.randint(3, 25)
        question = f"Each box holds {a} {item}. How many {item} are in {b} boxes?"
        answer, step = a * b, f"{b} boxes × {a} {item} = {{}} {item}"
    else:
        a = rng.randint(20, 99)
        b = rng.randint(3, a - 5)
        question = f"{person} had {a} {item} and gave away {b}. How many {item} does {person} have left?"
        answer, step = a - b, f"{a} - {b} = {{}}"
    wrong = answer + rng.choice([-10, -2, -1, 1, 2, 10])
    wrong = wrong if wrong >= 0 else answer + 10

    def worked(value: int) -> str:
        return (
            f"Work it out step by step: {step.format(value)}. Checking once more gives the same result. "
            f"The answer is {value}."
        )

    return Draft(
        [_user(question)],
        "math",
        (f"The answer is {answer}.", worked(answer)),
        (f"The answer is {wrong}.", worked(wrong)),
    )


# ---------------------------------------------------------------- the generator

_KINDS: tuple[Callable[[random.Random], Draft], ...] = (_chat, _multi_turn_chat, _safety, _code, _math)


def _key(conversation: list[Turn]) -> tuple[tuple[str, str], ...]:
    return tuple((turn["role"], turn["content"]) for turn in conversation)


def synthetic_drafts(rows: int, seed: int) -> list[Draft]:
    """`rows` drafts (a prompt with short and long good and bad answers), kinds cycling evenly, no repeats."""
    rng = random.Random(seed)
    kinds = [_KINDS[index % len(_KINDS)] for index in range(rows)]
    rng.shuffle(kinds)
    seen: set[tuple[tuple[str, str], ...]] = set()
    drafts = []
    for build in kinds:
        for _attempt in range(_MAX_ATTEMPTS):
            draft = build(rng)
            if _key(draft.conversation) not in seen:
                break
        seen.add(_key(draft.conversation))
        drafts.append(draft)
    return drafts


def synthetic_records(rows: int, seed: int) -> list[dict[str, Any]]:
    """`rows` labelled preference records, deterministic in (rows, seed); kinds cycle evenly, then shuffle."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    rng = random.Random(seed)
    kinds = [_KINDS[index % len(_KINDS)] for index in range(rows)]
    rng.shuffle(kinds)
    seen: set[tuple[tuple[str, str], ...]] = set()
    records: list[dict[str, Any]] = []
    for build in kinds:
        for _attempt in range(_MAX_ATTEMPTS):
            draft = build(rng)
            chosen_longer = rng.random() < CHOSEN_LONGER_SHARE
            chosen, rejected = (draft.good[1], draft.bad[0]) if chosen_longer else (draft.good[0], draft.bad[1])
            if _key(draft.conversation) not in seen and (len(chosen) > len(rejected)) == chosen_longer:
                break
        seen.add(_key(draft.conversation))
        records.append(
            {"conversation": draft.conversation, "chosen": chosen, "rejected": rejected, "domain": draft.domain}
        )
    return records
