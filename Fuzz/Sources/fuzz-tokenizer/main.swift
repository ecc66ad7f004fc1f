import Foundation
import FuzzSupport
import Strata

/// tokenizer.json: loaded, then a fixed text encoded and decoded, or a typed error.
let text = "Hello, world! It's 2026: \u{00e9}\u{0301} \u{65e5}\u{672c} \u{1F600}\r\n\t  12345 <s></s>"

func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let root = (try? JSONSerialization.jsonObject(with: Data(bytes: data, count: size))) as? [String: Any] else { return 0 }
    if let tok = try? Tokenizer(root: root, file: "tokenizer.json") {
        let ids = (try? tok.encode(text)) ?? []
        _ = try? tok.decode(ids)
        _ = try? tok.decode([0, 1, 2, 3, tok.vocabSize - 1, tok.vocabSize, -1])
    }
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
