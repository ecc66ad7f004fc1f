import StrataModels

/// The text side of one generated sequence: the tokens detokenized one by one
/// (`StreamingDecoder`), and the stop strings, whose text never reaches the output.
///
/// A stop string can span tokens ("EN" then "D" for "END"), so text that could still become the
/// start of a stop string is held back until the next token decides: the held text is the
/// longest suffix of the text so far that is a proper prefix of some stop string. A stop string
/// that completes can only start inside the held text (whatever came before it was handed out
/// because no stop string could start there), so the output ends right before the first stop
/// string, as OpenAI's API and vLLM end it, streamed or not. Matching is over Unicode scalars
/// (Python's `str`, which vLLM matches on). Empty stop strings are ignored. It also says when a
/// token is an end-of-sequence token that ends the sequence, so `Generator` and `BatchEngine`
/// decide a sequence's end in one place.
struct TextOutput {
    private var decoder: StreamingDecoder?
    /// the tokens that end the sequence (empty when the request generates past them)
    private let eos: Set<Int>
    /// the stop strings, as scalars
    private let stops: [[Unicode.Scalar]]
    /// text decoded but not handed out: it may be the start of a stop string
    private var held: [Unicode.Scalar] = []
    /// all the text handed out so far
    private(set) var text = ""

    /// `parameters`: its stop strings, and `stopAtEOS` (then `eos` ends the sequence).
    init(decoder: StreamingDecoder?, parameters: SamplingParameters, eos: Set<Int>) {
        self.decoder = decoder
        self.eos = parameters.stopAtEOS ? eos : []
        stops = parameters.stopStrings.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    /// Adds one token: the text that can be handed out now, and whether the sequence ends here
    /// (a stop string completed, and the text ends before it; or an end-of-sequence token).
    mutating func push(_ token: Int) throws -> (text: String, stop: StopReason?) {
        let piece = try decoder?.push(token) ?? ""
        let (out, stopped) = push(text: piece)
        return (out, stopped ? .stopString : eos.contains(token) ? .eos : nil)
    }

    /// At the end of a sequence that did not stop at a stop string: the decoder's tail (an
    /// incomplete character as U+FFFD) and the held text, which no stop string can complete now.
    /// Stops short of a stop string that the tail completes.
    mutating func finish() -> String {
        let tail = (try? decoder?.finish()) ?? ""
        let (out, stopped) = push(text: tail)
        if stopped { return out }
        let rest = String(String.UnicodeScalarView(held))
        held.removeAll()
        text += rest
        return out + rest
    }

    /// Adds decoded text (what `push(_:)` does with a token's piece).
    mutating func push(text piece: String) -> (text: String, stopped: Bool) {
        if stops.isEmpty {
            text += piece
            return (piece, false)
        }
        held.append(contentsOf: piece.unicodeScalars)
        // the first stop string to start, of those in the held text
        var first: Int?
        for s in stops where s.count <= held.count {
            var i = 0
            while i + s.count <= held.count, i < (first ?? Int.max) {
                if held[i] == s[0] && held[i..<(i + s.count)].elementsEqual(s) { first = i; break }
                i += 1
            }
        }
        if let first {
            let out = String(String.UnicodeScalarView(held[..<first]))
            held.removeAll()
            text += out
            return (out, true)
        }
        // keep the longest suffix that is a proper prefix of a stop string
        var keep = 0
        for s in stops {
            var n = min(s.count - 1, held.count)
            while n > keep {
                if held[(held.count - n)...].elementsEqual(s[..<n]) { keep = n; break }
                n -= 1
            }
        }
        let out = String(String.UnicodeScalarView(held[..<(held.count - keep)]))
        held.removeFirst(held.count - keep)
        text += out
        return (out, false)
    }
}

/// One sequence's output side, the same for `Generator` and `BatchEngine` (the scheduler and the
/// runner do not sample): each row of logits checked finite (a non-finite one names where the
/// pass went wrong), a token sampled, detokenized and tested against the stop strings and EOS
/// (`TextOutput`), the token limit and the context.
struct SequenceOutput {
    var sampler: Sampler
    var text: TextOutput
    let parameters: SamplingParameters
    /// the tokens generated so far
    private(set) var generated: [Int] = []
    /// where the sequence is in its grammar (structured output), when it has one
    var matcher: GrammarMatcher?

    init(loaded: LoadedModel, parameters: SamplingParameters, prompt: [Int]) {
        self.parameters = parameters
        matcher = parameters.constraint.map(GrammarMatcher.init)
        sampler = Sampler(parameters: parameters, vocabSize: loaded.spec.vocabSize, prompt: prompt)
        text = TextOutput(decoder: loaded.tokenizer.map { StreamingDecoder(tokenizer: $0) }, parameters: parameters, eos: loaded.eos)
    }

    /// The next token from `row`, the logits of the sequence's last position `position`, and
    /// why the sequence ends after it (nil: it goes on). `contextFull`: the cache holds no
    /// position after this token's. Throws `ModelError.nonFiniteLogits` (with the place found by
    /// re-running `prompt()` and the tokens generated) for a row that is not finite; errors of the
    /// detokenizer pass through.
    mutating func next(_ row: UnsafeBufferPointer<Float>, model: CausalLM, position: Int, contextFull: Bool,
                       prompt: () -> [Int32]) throws -> (token: GeneratedToken, stop: StopReason?) {
        try model.checkFinite(row, position: position) { prompt() + generated.map(Int32.init) }
        let id: Int
        if var m = matcher {
            // a token must leave room to finish the grammar in the tokens that remain
            let allowed = m.constraint.distances(m.state)
            id = sampler.sample(row, allowed: allowed, limit: parameters.maxTokens - generated.count - 1)
            guard m.accept(id) else { throw ModelError.grammarDeadEnd(kind: m.constraint.kind, generated: generated.count) }
            matcher = m
        } else {
            id = sampler.sample(row)
        }
        generated.append(id)
        let (piece, textStop) = try text.push(id)
        let token = parameters.logprobs == nil ? GeneratedToken(id: id, text: piece)
            : GeneratedToken(id: id, text: piece, logprob: sampler.lastLogprob, topLogprobs: sampler.lastTopLogprobs)
        var stop = textStop
        if stop == nil, let m = matcher, m.isComplete { stop = .eos }   // the grammar is done: nothing else may follow
        if stop == nil && generated.count >= parameters.maxTokens { stop = .maxTokens }
        if stop == nil && contextFull { stop = .contextFull }
        return (token, stop)
    }

    /// At the end (any reason but a stop string): the text still held back.
    mutating func finish() -> String { text.finish() }
}
