// Command hello is the program the sizebudget test checks.
package main

import "fmt"

func main() { fmt.Println("hello") }
