import Foundation
import FuzzSupport
import Strata

/// Strata's order-keeping JSON parser (request bodies, headers, chat messages): parse, and
/// what parses serializes and parses back to the same value.
func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let v = try? JSONValue.parse(Data(bytes: data, count: size)) {
        let again = try! JSONValue.parse(v.compact)
        precondition(again == v || "\(v)".contains("nan"), "round trip changed the value")
    }
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
